/** `doctor` on the emulator: all good, then one failure of each kind with its cause and fix. */
import assert from "node:assert/strict";
import { type Emulator, startEmulator } from "./emulator/mod.ts";
import { writeRefreshRecord } from "../lib/cache.ts";
import { makeCacheDir, runPlugin } from "./support/plugin_process.ts";

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

test("doctor shows the background refresh's record: a failure with its reason, or success", async () => {
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
  const run = await doctor(["--cache-dir", cacheDir]);
  await Deno.remove(cacheDir, { recursive: true });
  assert.equal(run.code, 0, run.stdout);
  assert.match(run.lines.at(-2)!, /^✓ refresh +fra\.ocir\.io: last background refresh succeeded/);
  assert.match(
    run.lines.at(-1)!,
    /^! refresh +iad\.ocir\.io: 3 background refresh\(es\) failed, .*\(OCIR token iad\.ocir\.io: HTTP 503\); next try from /,
  );
});
