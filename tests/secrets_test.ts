/**
 * Issue 5, secrets and egress: every scenario of fault_scenarios.ts again, at `--log-level debug`
 * (a quieter level prints a subset of debug's lines; faults_test.ts checks the default level, and
 * the retry scenarios there run at info), each request carrying a KEP-4412 service-account token,
 * proving that
 * - no stderr, and no record file of `status` (status-<host>.* in the cache directory), holds
 *   any 20-character piece of a token (docker, security, service account), a private key (the
 *   instance's, the session's) or a certificate body, whichever scenario revealed it;
 * - plain HTTP goes only to IMDS (HTTP_PROXY points at the emulator's proxy, which records
 *   anything else), every tunnel is to port 443 of the auth service or of the image's own
 *   registry host, and a host that is not OCIR receives nothing;
 * and, among the scenarios, that TLS is never relaxed (another CA, no CA).
 */
import assert from "node:assert/strict";
import { API_VERSIONS, PULL_IDENTITY_ANNOTATION } from "../lib/kubelet.ts";
import { makeCacheDir, startPlugin } from "./support/plugin_process.ts";
import { federationArgs, okeArgs } from "./support/workload.ts";
import type { Emulator, RequestLogEntry } from "./emulator/mod.ts";
import { emulatorTest } from "./support/emulator.ts";
import { PLANTED, runScenario, SCENARIOS, SecretWatch } from "./support/fault_scenarios.ts";

/** A request as kubelet sends it with KEP-4412 tokenAttributes: with the pod's token. */
const requestWithToken = (image: string) =>
  JSON.stringify({
    apiVersion: API_VERSIONS[0],
    kind: "CredentialProviderRequest",
    image,
    serviceAccountToken: PLANTED.serviceAccountToken,
    serviceAccountAnnotations: { "example.com/role": "puller" },
  });

/** Asserts the run reached nothing but IMDS over plain HTTP and OCI over TLS, on port 443. */
function assertEgress(emu: Emulator, requests: RequestLogEntry[], image: string, name: string) {
  const registry = image.split("/")[0].toLowerCase();
  const imds = `${emu.env.OCI_METADATA_BASE_URL}/`;
  for (const entry of requests.filter((r) => r.service === "proxy")) {
    // A plain-HTTP request through the proxy shows as its absolute URL; only IMDS's may.
    if (entry.host.startsWith("http:")) {
      assert.ok(entry.host.startsWith(imds), `plain HTTP to ${entry.host}: ${name}`);
      continue;
    }
    const m = /^([a-z0-9.-]+):443$/.exec(entry.host);
    assert.ok(m, `a tunnel to ${entry.host}, not port 443: ${name}`);
    assert.ok(
      m[1] === registry || (m[1].startsWith("auth.") && emu.hosts.includes(m[1])),
      `a tunnel to ${m[1]}, neither the auth service nor the image's registry: ${name}`,
    );
  }
}

emulatorTest(
  "secrets: no scenario's stderr, at debug level, holds a secret; nothing goes astray",
  async (t, rig) => {
    const watch = new SecretWatch();
    const seen: { name: string; stderr: string }[] = [];
    // What each scenario left in the status records, read before its cache directory goes.
    const records: { name: string; text: string }[] = [];
    for (const scenario of SCENARIOS) {
      await t.step(scenario.name, async () => {
        await watch.addIdentity(rig.emu);
        const { run, requests, image } = await runScenario(rig, scenario, {
          level: "debug",
          // Plain HTTP to anything but NO_PROXY's loopback IMDS would reach the proxy and show.
          env: { HTTP_PROXY: rig.emu.env.HTTPS_PROXY },
          request: requestWithToken,
          inspect: async (run, dir) => {
            await watch.harvest(run, dir);
            for (const entry of Deno.readDirSync(dir)) {
              if (!entry.name.startsWith("status-")) continue;
              const text = await Deno.readTextFile(`${dir}/${entry.name}`);
              records.push({ name: `${scenario.name}: ${entry.name}`, text });
            }
          },
        });
        seen.push({ name: scenario.name, stderr: run.stderr });
        assertEgress(rig.emu, requests, image, scenario.name);
      });
    }
    // Checked again at the end: a secret one scenario revealed may be in another's stderr.
    await t.step("no stderr holds a secret that any scenario revealed", () => {
      assert.equal(seen.length, SCENARIOS.length);
      for (const { name, stderr } of seen) watch.assertClean(stderr, name);
    });
    await t.step("no status record holds a secret that any scenario revealed", () => {
      // Most scenarios name an OCIR image: their outcome, failed or not, is on record.
      assert.ok(records.length > SCENARIOS.length / 2, `${records.length} records`);
      assert.ok(records.some((r) => r.text.includes('"failed"')), "failures among them");
      for (const { name, text } of records) watch.assertClean(text, name);
    });
  },
);

Deno.test("secrets: the watch sees a piece of a secret however it is wrapped, and nothing else", () => {
  const watch = new SecretWatch();
  const line = (msg: string) => `oke-credential-provider level=error step=OCIR-token msg="${msg}"`;
  const keyLine = PLANTED.otherKeyPem.split("\n")[5];
  const [keyEnd, keyStart] = [keyLine.slice(-12), PLANTED.otherKeyPem.split("\n")[6].slice(0, 12)];
  for (
    const leak of [
      keyLine.slice(10, 31), // a piece of a key
      `${keyEnd} ${keyStart}`, // across the PEM's line break, the log's space between
      PLANTED.dockerToken.slice(60, 85), // from the middle of a token
      PLANTED.serviceAccountToken.slice(0, 25), // the start of another
    ]
  ) {
    assert.throws(() => watch.assertClean(line(`x ${leak} y`), "self-test"), /planted|JWT/);
  }
  watch.assertClean(line("HTTP 401 UNAUTHORIZED: token [JWT redacted] refused"), "self-test");
});

emulatorTest(
  "secrets: per-workload runs at debug level, succeeding and failing, print no piece of a secret",
  async (_t, { emu }) => {
    const cluster = await emu.startCluster();
    emu.trusts.push({ issuer: cluster.issuer, jwks: cluster.jwks });
    emu.grantWorkload({ namespace: "team-a", serviceAccount: "puller", repository: "team-a/app" });
    const watch = new SecretWatch();
    await watch.addIdentity(emu);
    const sa = { namespace: "team-a", name: "puller", uid: crypto.randomUUID() };
    const image = `${emu.registryHost}/${emu.namespace}/team-a/app:1`;
    const backends = [okeArgs(cluster), federationArgs(emu)];
    const runs: { name: string; stderr: string }[] = [];
    const dirs: string[] = [];
    try {
      for (const args of backends) {
        for (
          const [what, opts] of [
            ["ok", {}],
            ["forged", { forged: true }],
            ["wrong audience", { audience: "elsewhere" }],
            ["expired", { ttl: 600, ageSeconds: 1200 }],
          ] as const
        ) {
          const token = await cluster.mintServiceAccountToken(sa, opts);
          watch.add(`service-account token (${what})`, token);
          const dir = await makeCacheDir("wi-");
          dirs.push(dir);
          const run = await startPlugin({
            stdin: JSON.stringify({
              apiVersion: API_VERSIONS[0],
              kind: "CredentialProviderRequest",
              image,
              serviceAccountToken: token,
              serviceAccountAnnotations: { [PULL_IDENTITY_ANNOTATION]: "workload" },
            }),
            env: emu.env,
            args: ["--cache-dir", dir, "--log-level", "debug", ...args],
            killAfterMs: 40_000,
          }).done;
          // The emulated trust names no audience, so the identity domain takes any (unverified
          // for a real domain); proxymux accepts only the API server's own.
          const succeeds = what === "ok" || (what === "wrong audience" && args[1] === "federation");
          assert.equal(run.code, succeeds ? 0 : 1, `${args[1]} ${what}: ${run.stderr}`);
          await watch.harvest(run, dir);
          runs.push({ name: `${args[1]} ${what}`, stderr: run.stderr });
          // The service-account token is not kept anywhere on disk.
          for await (const entry of Deno.readDir(dir)) {
            const text = await Deno.readTextFile(`${dir}/${entry.name}`).catch(() => "");
            assert.ok(!text.includes(token.split(".")[2]), `${entry.name} holds the token`);
          }
        }
      }
      for (const { name, stderr } of runs) watch.assertClean(stderr, name);
    } finally {
      for (const dir of dirs) await Deno.remove(dir, { recursive: true });
    }
  },
);
