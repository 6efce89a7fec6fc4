/** `doctor` on the emulator: all good, then one failure of each kind with its cause and fix. */
import assert from "node:assert/strict";
import { type Emulator, startEmulator } from "./emulator/mod.ts";
import { writeRefreshRecord } from "../lib/refresh_record.ts";
import { recordOutcome } from "../lib/status.ts";
import { makeCacheDir, runPlugin } from "./support/plugin_process.ts";
import { federationArgs, okeArgs } from "./support/workload.ts";

const emu: Emulator = await startEmulator();
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      emu.clearFaults();
      await fn();
    },
  });
addEventListener("unload", () => emu.close());

const doctor = async (args: string[] = [], env: Record<string, string> = {}) => {
  const run = await runPlugin({
    stdin: "",
    env: { ...emu.env, ...env },
    args: ["doctor", "--timeout", "10", ...args],
  });
  assert.equal(run.stderr, "", "doctor reports on stdout only");
  // The recorded calls come first (status_emulator_test.ts checks them): the live checks follow.
  const lines = run.stdout.trimEnd().split("\n");
  return {
    ...run,
    lines: lines.slice(lines.indexOf("what happens now (every step, run on this node):") + 1),
  };
};
const marks = (lines: string[]) =>
  lines.filter((l) => !l.startsWith("  ")).map((l) => `${l[0]} ${l.slice(2, 16).trim()}`);

test("doctor passes every check on a healthy node and exits 0", async () => {
  const cacheDir = await makeCacheDir("d-");
  const run = await doctor(["--cache-dir", cacheDir]);
  await Deno.remove(cacheDir);
  assert.equal(run.code, 0, run.stdout);
  assert.deepEqual(marks(run.lines), [
    "✓ IMDS",
    "✓ certificate",
    "✓ instance",
    "✓ region",
    "✓ auth endpoint",
    "✓ federation",
    "✓ OCIR token",
    "- refresh",
  ]);
  assert.match(run.lines.at(-1)!, /no background refresh recorded .*oke-credential-provider warm/);
  assert.match(
    run.stdout,
    new RegExp(`tenancy ${emu.instance.tenancy}, compartment ${emu.instance.compartment}`),
  );
  assert.match(run.stdout, /us-ashburn-1 \(IAD\), realm oc1 \(oraclecloud\.com\)/);
  assert.match(run.stdout, /iad\.ocir\.io issued a docker token valid until/);
  assert.match(run.lines[0], /\(\d+ ms\)$/);
  assert.ok(!/eyJ|BEGIN/.test(run.stdout), "no token or PEM is printed");
});

test("doctor names an unreachable IMDS and skips what depends on it", async () => {
  emu.fault("imds", { status: [403, 403, 403, 403] });
  const run = await doctor();
  assert.equal(run.code, 1);
  assert.match(run.lines[0], /^✗ IMDS +IMDS 127\.0\.0\.1:\d+: HTTP 403/);
  assert.match(run.lines[1], /^ {2}fix: .*IMDS must answer on this node/);
  assert.ok(run.lines.slice(2).every((l) => l.startsWith("- ")), run.stdout);
});

test("doctor measures clock skew when the auth service refuses the signature", async () => {
  emu.fault("auth", { clockSkewSec: 900 });
  const run = await doctor();
  assert.equal(run.code, 1);
  const failed = run.lines.findIndex((l) => l.startsWith("✗"));
  assert.match(
    run.lines[failed],
    /^✗ federation +federation auth\.us-ashburn-1\.oraclecloud\.com: HTTP 401/,
  );
  assert.match(
    run.lines[failed + 1],
    /^ {2}fix: this node's clock is behind by (899|900|901) s \(the auth service allows 300\)/,
  );
});

test("doctor gives the dynamic group and policy, with this compartment, when OCIR refuses", async () => {
  emu.fault("ocir", { status: [403] });
  const run = await doctor();
  assert.equal(run.code, 1);
  assert.match(run.stdout, /✗ OCIR token +OCIR token iad\.ocir\.io: HTTP 403/);
  assert.match(
    run.stdout,
    new RegExp(
      `fix: .*dynamic group .*instance\\.compartment\\.id = '${emu.instance.compartment}'.*Allow dynamic-group`,
    ),
  );
});

test("doctor reports an expired certificate with the clock as the first suspect", async () => {
  await emu.expireLeaf();
  try {
    const run = await doctor();
    assert.equal(run.code, 1);
    assert.match(
      run.stdout,
      /✗ certificate +identity: instance certificate is valid from .* not now/,
    );
    assert.match(run.stdout, /fix: check the node's clock/);
  } finally {
    await emu.rotateLeaf();
  }
});

test("doctor --image refuses a non-OCIR image before contacting anything", async () => {
  const before = emu.requests.length;
  const run = await doctor(["--image", "docker.io/library/nginx:1"]);
  assert.equal(run.code, 1);
  assert.match(run.lines[0], /^✗ image +image: docker\.io is not an OCIR registry host/);
  assert.equal(emu.requests.length, before);
});

/**
 * A cache directory with two refresh records, iad's failed (three times, until a minute from now)
 * and fra's succeeded; `more` adds to it before doctor runs there. The directory is removed after.
 */
async function doctorOnRefreshRecords(more: (dir: string, retryAt: number) => Promise<void>) {
  const cacheDir = await makeCacheDir("d-");
  const at = Date.now() / 1000;
  await writeRefreshRecord(cacheDir, {
    host: "iad.ocir.io",
    at,
    ok: false,
    failures: 3,
    retryAt: at + 60,
    reason: "OCIR token iad.ocir.io: HTTP 503",
  });
  await writeRefreshRecord(cacheDir, {
    host: "fra.ocir.io",
    at,
    ok: true,
    failures: 0,
    retryAt: at,
  });
  await more(cacheDir, at + 60);
  const run = await doctor(["--cache-dir", cacheDir]);
  await Deno.remove(cacheDir, { recursive: true });
  return run;
}

test("doctor shows the background refresh's record: a failure with its reason, or success", async () => {
  const run = await doctorOnRefreshRecords(async () => {});
  assert.equal(run.code, 0, run.stdout);
  assert.match(run.lines.at(-2)!, /^✓ refresh +fra\.ocir\.io: last background refresh succeeded/);
  assert.match(
    run.lines.at(-1)!,
    /^! refresh +iad\.ocir\.io: 3 background refresh\(es\) failed, .*\(OCIR token iad\.ocir\.io: HTTP 503\); next try from /,
  );
});

test("doctor shows a refresh once: with the host's recorded calls when it has them", async () => {
  // iad's failure was recorded for `status` too, as the refresh process does; fra's calls were
  // not (recording was off).
  const run = await doctorOnRefreshRecords(async (dir, retryAt) => {
    await recordOutcome(dir, "iad.ocir.io", {
      outcome: "refresh-failed",
      error: { step: "OCIR token", code: "HTTP_503", host: "iad.ocir.io", message: "HTTP 503" },
      backoffUntil: retryAt,
    });
  });
  assert.equal(run.code, 0, run.stdout);
  assert.match(run.stdout, /\n {4}refresh +last failed .*; backing off until /);
  assert.equal(run.stdout.match(/iad\.ocir\.io: .*background refresh/g), null, run.stdout);
  assert.match(run.lines.at(-1)!, /^✓ refresh +fra\.ocir\.io: last background refresh succeeded/);
});

// --service-account-token: the per-workload exchange and docker token, each failure explained.
// Token files where the plugin may read them (its cache root).
const workloadDir = await makeCacheDir("wi-");
addEventListener("unload", () => {
  try {
    Deno.removeSync(workloadDir, { recursive: true });
  } catch {
    // the cache root's own clean-up may have come first
  }
});
const A = { namespace: "team-a", name: "puller", uid: crypto.randomUUID() };
const tokenFile = async (opts = {}, sa = A) => {
  const cluster = await emu.startCluster();
  const file = `${workloadDir}/${crypto.randomUUID()}`;
  await Deno.writeTextFile(file, await cluster.mintServiceAccountToken(sa, opts));
  return file;
};
const oke = async () => okeArgs(await emu.startCluster());
const federation = federationArgs(emu);
const fixAfter = (lines: string[], check: string) => {
  const at = lines.findIndex((l) => l.startsWith(`✗ ${check}`));
  assert.ok(at >= 0, lines.join("\n"));
  return lines[at + 1];
};

test("doctor --service-account-token: oke exchange, the workload's docker token, its pull", async () => {
  emu.grantWorkload({ namespace: "team-a", serviceAccount: "puller", repository: "team-a/app" });
  const file = await tokenFile();
  const run = await doctor([
    "--service-account-token",
    file,
    ...await oke(),
    "--image",
    `iad.ocir.io/${emu.namespace}/team-a/app:1`,
  ]);
  const checks = marks(run.lines).filter((m) => !m.endsWith(" refresh"));
  assert.deepEqual(checks.slice(-4), [
    "✓ service acct",
    "✓ exchange",
    "✓ OCIR token",
    "✓ manifest",
  ], run.stdout);
  assert.equal(run.code, 0, run.stdout);
  assert.match(run.stdout, /team-a\/app:1 is readable/);
  assert.match(run.stdout, /✓ service acct +team-a\/puller \(uid [0-9a-f-]+\), token valid until/);
  assert.match(run.stdout, /proxymux 127\.0\.0\.1:\d+ issued a workload session token/);
  assert.ok(!run.stdout.includes(await Deno.readTextFile(file)), "the token is never printed");
});

test("doctor --service-account-token explains: audience refused, not enhanced, trust and policy missing", async () => {
  const cluster = await emu.startCluster();
  const audience = await doctor([
    "--service-account-token",
    await tokenFile({ audience: "x" }),
    ...await oke(),
  ]);
  assert.equal(audience.code, 1);
  assert.match(fixAfter(audience.lines, "exchange"), /fix: audience refused/);

  cluster.enhanced = false;
  try {
    const off = await doctor(["--service-account-token", await tokenFile(), ...await oke()]);
    assert.match(fixAfter(off.lines, "exchange"), /fix: not an enhanced cluster/);
  } finally {
    cluster.enhanced = true;
  }

  const noTrust = await doctor(["--service-account-token", await tokenFile(), ...federation]);
  assert.match(
    fixAfter(noTrust.lines, "exchange"),
    /fix: trust missing: create an Identity Propagation Trust/,
  );

  emu.trusts.push({ issuer: cluster.issuer, jwks: cluster.jwks });
  emu.allowTokenExchange = false;
  try {
    const denied = await doctor(["--service-account-token", await tokenFile(), ...federation]);
    assert.match(
      fixAfter(denied.lines, "exchange"),
      /fix: policy missing: allow the workers' dynamic group/,
    );
  } finally {
    emu.allowTokenExchange = true;
  }
  const ok = await doctor(["--service-account-token", await tokenFile(), ...federation]);
  assert.equal(ok.code, 0, ok.stdout);

  // A service account with no read-repos statement: the pull check says which policy is missing.
  const other = { namespace: "team-z", name: "nobody", uid: crypto.randomUUID() };
  const denied = await doctor([
    "--service-account-token",
    await tokenFile({}, other),
    ...await oke(),
    "--image",
    `iad.ocir.io/${emu.namespace}/team-a/app:1`,
  ]);
  assert.match(
    fixAfter(denied.lines, "manifest"),
    /fix: policy missing: Allow any-user to read repos .*request\.principal\.namespace = 'team-z', request\.principal\.service_account = 'nobody'/,
  );
});
