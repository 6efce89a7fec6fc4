/**
 * Issue 11, fidelity: what a real OCI service or node may present that the plugin must accept.
 * A security token whose `tenant` claim differs from the certificate's tenancy, a docker-token
 * answer without `expires_in`, IMDS reachable only at its IPv6 address, and a node whose
 * HTTP_PROXY would swallow IMDS requests.
 */
import assert from "node:assert/strict";
import { deadline } from "../lib/deadline.ts";
import { fetchInstanceDocuments } from "../lib/imds.ts";
import { createLogger } from "../lib/log.ts";
import type { Emulator, EmulatorOptions } from "./emulator/mod.ts";
import { emulatorDirTest } from "./support/emulator.ts";
import { appImage, LOG_LINE } from "./support/fault_scenarios.ts";
import { kubeletRequest, runPlugin } from "./support/plugin_process.ts";

/** A test with an emulator of its own, started with `options`, and a fresh cache directory. */
const test = (
  name: string,
  options: EmulatorOptions,
  body: (emu: Emulator, cacheDir: string) => Promise<void>,
) => emulatorDirTest(name, ({ emu }, dir) => body(emu, dir), options);

const provide = (emu: Emulator, cacheDir: string, env: Record<string, string> = {}) =>
  runPlugin({
    stdin: kubeletRequest(appImage(emu)),
    env: { ...emu.env, ...env },
    args: ["--cache-dir", cacheDir, "--timeout", "20", "--log-level", "debug"],
  });

/** A loopback port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const OTHER_TENANCY = "ocid1.tenancy.oc1..aaaaaaaaotherotherotherotherotherotherotherotherother";

test(
  "a security token naming another tenancy than the certificate: a debug line, and the answer",
  { tenantClaim: OTHER_TENANCY },
  async (emu, dir) => {
    const run = await provide(emu, dir);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.response!.auth["iad.ocir.io"].password);
    const lines = run.stderr.trimEnd().split("\n");
    assert.ok(lines.every((l) => LOG_LINE.test(l)), run.stderr);
    assert.ok(
      lines.some((l) =>
        l.startsWith("oke-credential-provider level=debug step=federation ") &&
        l.includes(
          `names tenancy ${OTHER_TENANCY}, the instance certificate ${emu.instance.tenancy}`,
        )
      ),
      run.stderr,
    );
    assert.ok(!lines.some((l) => /level=(warn|error)/.test(l)), run.stderr);
  },
);

test(
  "a docker-token answer without expires_in: the token's exp bounds the cache",
  { omitExpiresIn: true, dockerTokenTtl: 1800 },
  async (emu, dir) => {
    const run = await provide(emu, dir);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.response!.auth["iad.ocir.io"].password);
    // Until the refresh point of an 1800 s token (a third of it, ±10%: 540–660 s after it was
    // obtained, less the moments since): as with expires_in 1800.
    const [, m, s] = /^(\d+)m(\d+)s$/.exec(run.response!.cacheDuration) ?? [];
    const seconds = Number(m) * 60 + Number(s);
    assert.ok(seconds >= 530 && seconds <= 660, run.response!.cacheDuration);
  },
);

test(
  "a docker-token answer without expires_in nor a JWT: a short default lifetime",
  {},
  async (emu, dir) => {
    emu.fault("ocir:/docker/token", { body: '{"token":"opaque-token-of-some-registry"}' });
    const run = await provide(emu, dir);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.response!.auth["iad.ocir.io"].password, "opaque-token-of-some-registry");
    const seconds = Number(/^(\d+)s$/.exec(run.response!.cacheDuration)?.[1]);
    assert.ok(seconds > 0 && seconds <= 60, run.response!.cacheDuration);
  },
);

test(
  "IMDS only on IPv6: the IPv4 address cannot be reached, the IPv6 one answers",
  { imdsHostname: "::1" },
  async (emu) => {
    const lines: string[] = [];
    // The two default addresses, replaced: a dead IPv4 one, and the emulator on ::1.
    const baseUrls = [`http://127.0.0.1:${closedPort()}/opc/v2`, emu.env.OCI_METADATA_BASE_URL];
    assert.match(baseUrls[1], /^http:\/\/\[::1\]:\d+\/opc\/v2$/);
    const docs = await fetchInstanceDocuments({
      baseUrls,
      deadline: deadline(20),
      log: createLogger("info", (l) => lines.push(l)),
    });
    assert.equal(docs.region.regionId, "us-ashburn-1");
    assert.equal(docs.baseUrl, baseUrls[1]);
    assert.equal(docs.certificatePem, emu.leafCertPem);
    assert.ok(
      lines.some((l) =>
        /step=IMDS msg="127\.0\.0\.1:\d+ cannot be reached \(request failed: .*\): trying \[::1\]:\d+"/
          .test(l)
      ),
      lines.join("\n"),
    );

    // Neither address: the error names both.
    await emu.close();
    await assert.rejects(
      fetchInstanceDocuments({ baseUrls, deadline: deadline(20), log: createLogger("error") }),
      /^PluginError: IMDS 127\.0\.0\.1:\d+: request failed: .*Connection refused.*; and at \[::1\]:\d+: request failed: .*Connection refused/,
    );
  },
);

test(
  "HTTP_PROXY on a dead port, NO_PROXY not naming IMDS: IMDS is still asked directly",
  {},
  async (emu, dir) => {
    const dead = `http://127.0.0.1:${closedPort()}`;
    const run = await provide(emu, dir, { HTTP_PROXY: dead, http_proxy: dead, NO_PROXY: "" });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.response!.auth["iad.ocir.io"].password);
    assert.ok(emu.counters.imds >= 4);
    assert.equal(emu.counters.federations, 1, "auth and OCIR still went through HTTPS_PROXY");
  },
);
