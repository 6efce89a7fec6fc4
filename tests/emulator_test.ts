/**
 * The emulator as a whole: the official OCI SDK (oci-common) obtains a docker token from it
 * with nothing but its environment; IMDS serves and refuses like IMDS v2; the CONNECT proxy
 * tunnels only served hosts; the command line prints the environment and stops on SIGTERM.
 */
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { decodeJwt } from "jose";
import { startEmulator } from "./emulator/mod.ts";
import { importPkcs1 } from "./emulator/client.ts";
import { emulatorTest } from "./support/emulator.ts";
import { kubeletRequest, makeCacheDir, runPlugin } from "./support/plugin_process.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Runs the oci-common probe in a process that has only the emulator's environment. */
async function sdkProbe(env: Record<string, string>, federation: string, registry: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", "tests/emulator/sdk_probe.ts", federation, registry],
    // Deno's own update check would otherwise ask the proxy for its download host.
    env: { ...env, DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

emulatorTest(
  "the official SDK (oci-common) federates and gets a docker token, through env alone",
  async (t, { emu }) => {
    await t.step(
      "docker token issued; SDK quirks (x-date, SHA-1 keyId, host, purpose) accepted",
      async () => {
        const r = await sdkProbe(
          emu.env,
          "https://auth.us-ashburn-1.oraclecloud.com",
          "iad.ocir.io",
        );
        assert.equal(r.code, 0, r.stderr);
        const answer = JSON.parse(r.stdout);
        assert.equal(answer.status, 200, r.stdout);
        assert.equal(answer.body.expires_in, 3600);
        assert.equal(decodeJwt(answer.body.token).tenancy, emu.instance.tenancy);
        assert.match(answer.signedWith, /headers="x-date \(request-target\) host"/);
        assert.equal(emu.counters.federations, 1);
        assert.equal(emu.counters.dockerTokens, 1);
        const served = emu.requests.filter((e) => e.service !== "proxy").map((e) =>
          `${e.service} ${e.path} ${e.status}`
        );
        assert.ok(served.includes("auth /v1/x509 200"), served.join("\n"));
        assert.ok(served.includes("ocir /20180419/docker/token 200"), served.join("\n"));
        assert.deepEqual(
          new Set(emu.connects),
          new Set(["auth.us-ashburn-1.oraclecloud.com:443", "iad.ocir.io:443"]),
        );
      },
    );
    await t.step(
      "with real-shaped certificates (one multi-valued RDN) the SDK fails, as on OCI",
      async () => {
        const real = await startEmulator();
        try {
          const r = await sdkProbe(
            real.env,
            "https://auth.us-ashburn-1.oraclecloud.com",
            "iad.ocir.io",
          );
          assert.notEqual(r.code, 0);
          assert.match(r.stderr, /autoDetectCertificatesUsingMetadataUrl/);
          assert.equal(real.counters.federations, 0);
        } finally {
          await real.close();
        }
      },
    );
  },
  // oci-common cannot read multi-valued RDN subjects (PROTOCOL.md §6): one RDN per OU for it.
  { multiValuedRdn: false },
);

emulatorTest(
  "IMDS v2 serves the identity and region, and refuses what IMDS refuses",
  async (t, { emu }) => {
    const base = emu.env.OCI_METADATA_BASE_URL;
    const get = async (
      path: string,
      headers: Record<string, string> = { authorization: "Bearer Oracle" },
    ) => {
      const res = await fetch(`${base}/${path}`, { headers });
      return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
    };
    await t.step(
      "leaf: OUs in one multi-valued RDN; key: PKCS#1 PEM of the leaf's key",
      async () => {
        const leaf = new x509.X509Certificate((await get("identity/cert.pem")).body);
        const rdns = leaf.subjectName.toJSON();
        const ouRdn = rdns.find((rdn) => rdn.OU);
        assert.deepEqual(ouRdn?.OU, [
          "opc-certtype:instance",
          `opc-compartment:${emu.instance.compartment}`,
          `opc-instance:${emu.instance.instanceId}`,
          `opc-tenant:${emu.instance.tenancy}`,
        ]);
        const keyPem = (await get("identity/key.pem")).body;
        assert.match(keyPem, /^-----BEGIN RSA PRIVATE KEY-----\n/);
        const key = await importPkcs1(keyPem);
        const data = new TextEncoder().encode("proof");
        const sig = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", key, data);
        const pub = await leaf.publicKey.export({ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, [
          "verify",
        ]);
        assert.ok(await crypto.subtle.verify("RSASSA-PKCS1-v1_5", pub, sig, data));
        const inter = new x509.X509Certificate((await get("identity/intermediate.pem")).body);
        assert.ok(await leaf.verify({ publicKey: inter, signatureOnly: true }));
      },
    );
    await t.step("region facts", async () => {
      assert.equal((await get("instance/region")).body, "iad");
      assert.equal((await get("instance/canonicalRegionName")).body, "us-ashburn-1");
      const info = await get("instance/regionInfo/");
      assert.equal(info.type, "application/json");
      assert.deepEqual(JSON.parse(info.body), {
        realmKey: "oc1",
        realmDomainComponent: "oraclecloud.com",
        regionKey: "IAD",
        regionIdentifier: "us-ashburn-1",
      });
      assert.equal(JSON.parse((await get("instance/")).body).id, emu.instance.instanceId);
    });
    await t.step("no Authorization: Bearer Oracle: 401", async () => {
      assert.equal((await get("identity/cert.pem", {})).status, 401);
      assert.equal(
        (await get("identity/cert.pem", { authorization: "Bearer oracle" })).status,
        401,
      );
      assert.match(emu.requests.at(-1)?.reason ?? "", /Bearer Oracle/);
    });
    for (const h of ["Forwarded", "X-Forwarded-For", "X-Forwarded-Host"]) {
      await t.step(`${h}: 400`, async () => {
        assert.equal(
          (await get("identity/key.pem", { authorization: "Bearer Oracle", [h]: "for=10.0.0.1" }))
            .status,
          400,
        );
      });
    }
    await t.step("/opc/v1 and unknown paths: 404", async () => {
      const v1 = await fetch(base.replace("/opc/v2", "/opc/v1") + "/identity/cert.pem");
      assert.equal(v1.status, 404);
      await v1.body?.cancel();
      assert.equal((await get("identity/nothing.pem")).status, 404);
    });
    await t.step("IMDS answers are counted", () => {
      assert.equal(emu.counters.imds, 7, "3 identity + 4 region answers; refusals not counted");
    });
    await t.step("phx short code; full id elsewhere; older IMDS without regionInfo", async () => {
      const phx = await startEmulator({ region: "us-phoenix-1", regionInfo: false });
      const fra = await startEmulator({
        region: "eu-frankfurt-1",
        multiValuedRdn: false,
        tenantPrefix: "opc-identity",
      });
      try {
        const h = { headers: { authorization: "Bearer Oracle" } };
        assert.equal(
          await (await fetch(`${phx.env.OCI_METADATA_BASE_URL}/instance/region`, h)).text(),
          "phx",
        );
        const none = await fetch(`${phx.env.OCI_METADATA_BASE_URL}/instance/regionInfo/`, h);
        assert.equal(none.status, 404);
        await none.body?.cancel();
        assert.equal(
          await (await fetch(`${fra.env.OCI_METADATA_BASE_URL}/instance/region`, h)).text(),
          "eu-frankfurt-1",
        );
        const leaf = new x509.X509Certificate(
          await (await fetch(`${fra.env.OCI_METADATA_BASE_URL}/identity/cert.pem`, h)).text(),
        );
        const ous = leaf.subjectName.toJSON().filter((rdn) => rdn.OU).map((rdn) => rdn.OU);
        assert.equal(ous.length, 4, "one RDN per OU");
        assert.deepEqual(ous[3], [`opc-identity:${fra.instance.tenancy}`]);
        assert.deepEqual(fra.hosts, [
          "auth.eu-frankfurt-1.oraclecloud.com",
          "fra.ocir.io",
          "eu-frankfurt-1.ocir.io",
          "ocir.eu-frankfurt-1.oci.oraclecloud.com",
          fra.identityDomainHost,
        ]);
        assert.match(fra.identityDomainHost, /^idcs-[0-9a-f]{32}\.identity\.oraclecloud\.com$/);
      } finally {
        await phx.close();
        await fra.close();
      }
    });
    await t.step("a dedicated region, known only by its keys, in its own realm", async () => {
      const drx = await startEmulator({
        region: "eu-dedicated-1",
        realmDomain: "oraclecloud99.com",
        regionKey: "DRX",
        realmKey: "oc99",
      });
      try {
        const res = await fetch(`${drx.env.OCI_METADATA_BASE_URL}/instance/regionInfo/`, {
          headers: { authorization: "Bearer Oracle" },
        });
        assert.deepEqual(await res.json(), {
          realmKey: "oc99",
          realmDomainComponent: "oraclecloud99.com",
          regionKey: "DRX",
          regionIdentifier: "eu-dedicated-1",
        });
        assert.deepEqual(drx.hosts, [
          "auth.eu-dedicated-1.oraclecloud99.com",
          "ocir.eu-dedicated-1.oci.oraclecloud99.com",
          drx.identityDomainHost,
        ]);
        assert.equal(drx.registryHost, "ocir.eu-dedicated-1.oci.oraclecloud99.com");
        assert.match(drx.instance.tenancy, /^ocid1\.tenancy\.oc99\.\./);
      } finally {
        await drx.close();
      }
      await assert.rejects(startEmulator({ region: "eu-dedicated-1" }), /pass regionKey/);
    });
  },
);

emulatorTest(
  "the CONNECT proxy tunnels served hosts only, and records every ask",
  async (t, { emu, client }) => {
    await t.step("a foreign host is refused with 403 and recorded", async () => {
      await assert.rejects(fetch("https://example.com/", { client }));
      assert.ok(emu.connects.includes("example.com:443"));
      const entry = emu.requests.find((e) => e.service === "proxy" && e.host === "example.com:443");
      assert.equal(entry?.status, 403);
      assert.match(entry?.reason ?? "", /not served/);
    });
    await t.step("a served host on another port is refused", async () => {
      await assert.rejects(fetch("https://iad.ocir.io:8443/v2/", { client }));
      assert.ok(emu.connects.includes("iad.ocir.io:8443"));
    });
    await t.step(
      "a served host on 443 goes through, with TLS verified against the CA",
      async () => {
        const res = await fetch("https://iad.ocir.io/v2/", { client });
        assert.equal(res.status, 401);
        await res.body?.cancel();
        const untrusting = Deno.createHttpClient({ proxy: { url: emu.env.HTTPS_PROXY } });
        try {
          await assert.rejects(fetch("https://iad.ocir.io/v2/", { client: untrusting }));
        } finally {
          untrusting.close();
        }
      },
    );
    await t.step("plain proxying (not CONNECT) is refused with 405", async () => {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: Number(new URL(emu.env.HTTPS_PROXY).port),
      });
      await conn.write(
        new TextEncoder().encode("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"),
      );
      const buf = new Uint8Array(256);
      const n = await conn.read(buf);
      conn.close();
      assert.match(text(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 405 /);
      assert.ok(emu.connects.includes("http://example.com/"));
    });
    await t.step("env names a plugin needs", () => {
      assert.deepEqual(Object.keys(emu.env).sort(), [
        "DENO_CERT",
        "HTTPS_PROXY",
        "NO_PROXY",
        "OCI_METADATA_BASE_URL",
      ]);
      assert.equal(emu.env.DENO_CERT, emu.caFile);
      assert.equal(emu.env.NO_PROXY, "127.0.0.1,localhost");
      assert.match(emu.env.OCI_METADATA_BASE_URL, /^http:\/\/127\.0\.0\.1:\d+\/opc\/v2$/);
    });
  },
);

Deno.test({
  name: "deno task emulator prints the exports, serves, and stops on SIGTERM",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "tests/emulator/cli.ts",
        "--region",
        "us-phoenix-1",
        "--token-ttl",
        "600",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines: string[] = [];
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    while (lines.length < 4) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      lines.push(...parts);
    }
    const env = Object.fromEntries(lines.map((l) => {
      const m = /^export ([A-Z_]+)=(.*)$/.exec(l);
      assert.ok(m, `not an export line: ${l}`);
      return [m[1], m[2]];
    }));
    assert.deepEqual(Object.keys(env), [
      "OCI_METADATA_BASE_URL",
      "HTTPS_PROXY",
      "NO_PROXY",
      "DENO_CERT",
    ]);
    const res = await fetch(`${env.OCI_METADATA_BASE_URL}/instance/region`, {
      headers: { authorization: "Bearer Oracle" },
    });
    assert.equal(await res.text(), "phx");
    // The plugin, given exactly those exports, gets its credentials.
    const cacheDir = await makeCacheDir();
    const run = await runPlugin({
      stdin: kubeletRequest("phx.ocir.io/emutenancy/app:1"),
      env,
      args: ["--cache-dir", cacheDir],
    });
    await Deno.remove(cacheDir, { recursive: true });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.response?.auth["phx.ocir.io"]?.username, "BEARER_TOKEN");
    child.kill("SIGTERM");
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
      reader.cancel(),
    ]);
    assert.equal(status.code, 0);
    assert.match(stderr, /imds {2}GET 127\.0\.0\.1:\d+\/opc\/v2\/instance\/region -> 200/);
    assert.match(stderr, /ocir {2}GET phx\.ocir\.io\/20180419\/docker\/token -> 200/);
    await assert.rejects(Deno.stat(env.DENO_CERT), "temporary files removed on exit");
  },
});

Deno.test({
  name: "deno task demo runs the plugin cold then warm and shows the wire",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tests/emulator/demo.ts"],
      env: { DENO_NO_UPDATE_CHECK: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /== run cold \(empty cache\): exit 0, \d+ ms/);
    assert.match(text, /auth {2}POST auth\.us-ashburn-1\.oraclecloud\.com\/v1\/x509 -> 200/);
    assert.match(text, /== run warm \(from cache\): exit 0, \d+ ms/);
    assert.match(text, /on the wire: nothing/);
    assert.match(text, /"password": "eyJhbG…\(\d+ chars\)"/, "the token is shown redacted");
  },
});
