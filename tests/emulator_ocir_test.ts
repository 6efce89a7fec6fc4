/**
 * The emulated OCIR: the docker-token endpoint (security-token signed requests), the registry
 * token realm (basic `BEARER_TOKEN` credentials, emulated IAM policy, Distribution JWTs), and
 * `/v2/` (Bearer challenge, or a reverse proxy to an attached registry).
 */
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from "jose";
import type { Emulator } from "./emulator/mod.ts";
import { type EmulatorFixture, emulatorTest } from "./support/emulator.ts";
import {
  dockerToken,
  federate,
  fetchIdentity,
  signedFetch,
  signedHeaders,
  type SignOptions,
} from "./emulator/client.ts";

const IAD = "iad.ocir.io";
const AUTH = "auth.us-ashburn-1.oraclecloud.com";

interface Fixture {
  emu: Emulator;
  client: Deno.HttpClient;
  st: { token: string; session: CryptoKeyPair };
}

/** The emulator test's fixture with a security token from it. */
async function withSecurityToken({ emu, client }: EmulatorFixture): Promise<Fixture> {
  return { emu, client, st: await federate(client, emu.env.OCI_METADATA_BASE_URL, AUTH) };
}

function lastReason(f: Fixture): string {
  return f.emu.requests.findLast((r) => r.service === "ocir")?.reason ?? "";
}

/** A docker-token request signed with the security token, any part replaced. */
async function tokenRequest(f: Fixture, v: Partial<SignOptions> = {}, host = IAD) {
  const res = await signedFetch(f.client, {
    method: "GET",
    url: `https://${host}/20180419/docker/token`,
    keyId: `ST$${f.st.token}`,
    privateKey: f.st.session.privateKey,
    ...v,
  });
  return { status: res.status, json: await res.json(), reason: lastReason(f) };
}

async function rejected(f: Fixture, v: Partial<SignOptions>, reason: RegExp, host = IAD) {
  const r = await tokenRequest(f, v, host);
  assert.equal(r.status, 401, JSON.stringify(r.json));
  assert.equal(r.json.code, "NotAuthenticated");
  assert.match(r.reason, reason);
}

/** Asks the realm as a docker client would. */
async function realm(
  f: Fixture,
  password: string,
  query: string,
  opts: { user?: string; host?: string } = {},
) {
  const host = opts.host ?? IAD;
  const basic = btoa(`${opts.user ?? "BEARER_TOKEN"}:${password}`);
  const res = await fetch(`https://${host}/20180419/docker/token?${query}`, {
    client: f.client,
    headers: { authorization: `Basic ${basic}` },
  });
  return { status: res.status, json: await res.json(), reason: lastReason(f) };
}

async function realmRejected(
  r: Promise<
    { status: number; json: { errors: { code: string; message: string }[] }; reason: string }
  >,
  reason: RegExp,
) {
  const { status, json, reason: logged } = await r;
  assert.equal(status, 401);
  assert.equal(json.errors[0].code, "UNAUTHORIZED");
  assert.equal(typeof json.errors[0].message, "string");
  assert.match(logged, reason);
}

emulatorTest(
  "OCIR docker token: issued for a security-token signed request, refused otherwise",
  async (t, fx) => {
    const f = await withSecurityToken(fx);
    await t.step(
      "every registry host form answers; the token records who and where",
      async () => {
        for (
          const host of [IAD, "us-ashburn-1.ocir.io", "ocir.us-ashburn-1.oci.oraclecloud.com"]
        ) {
          const r = await tokenRequest(f, {}, host);
          assert.equal(r.status, 200, JSON.stringify(r.json));
          assert.equal(r.json.access_token, r.json.token);
          assert.equal(r.json.scope, "");
          assert.equal(r.json.expires_in, 1800);
          const claims = decodeJwt(r.json.token);
          assert.equal(claims.aud, host);
          assert.equal(claims.tenancy, f.emu.instance.tenancy);
          assert.equal(claims.compartment, f.emu.instance.compartment);
          assert.equal(claims.instanceId, f.emu.instance.instanceId);
        }
      },
    );
    await t.step("x-date instead of date, and a query, are fine", async () => {
      const url = `https://${IAD}/20180419/docker/token?service=${IAD}&scope=repository:a/b:pull`;
      const r = await tokenRequest(f, { dateHeader: "x-date", url });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });
    await t.step("bad security-token signature", async () => {
      const [h, p, s] = f.st.token.split(".");
      const claims = JSON.parse(
        new TextDecoder().decode(Uint8Array.fromBase64(p, { alphabet: "base64url" })),
      );
      claims["opc-compartment"] = "ocid1.compartment.oc1..aaaaaaaaforged";
      const forged = new TextEncoder().encode(JSON.stringify(claims)).toBase64({
        alphabet: "base64url",
        omitPadding: true,
      });
      await rejected(
        f,
        { keyId: `ST$${h}.${forged}.${s}` },
        /security token: signature verification failed/,
      );
    });
    await t.step("security token signed by someone else", async () => {
      const own = await new SignJWT(decodeJwt(f.st.token))
        .setProtectedHeader({ alg: "RS256" })
        .sign(f.st.session.privateKey);
      await rejected(f, { keyId: `ST$${own}` }, /security token: signature verification failed/);
    });
    await t.step("expired security token", async () => {
      // OCIR's clock 25 minutes ahead: past the 20-minute token, with the request dated to match.
      f.emu.fault("ocir", { clockSkewSec: 1500 });
      try {
        await rejected(f, { time: Date.now() + 1500_000 }, /security token: .*"exp"/);
      } finally {
        f.emu.clearFaults();
      }
    });
    await t.step("request signed with a key other than the token's jwk", async () => {
      const id = await fetchIdentity(f.emu.env.OCI_METADATA_BASE_URL);
      await rejected(f, { privateKey: id.leafKey }, /signature does not verify/);
    });
    await t.step(
      "date skew over 5 minutes",
      () => rejected(f, { time: Date.now() - 400_000 }, /off the service clock/),
    );
    await t.step(
      "host not signed",
      () => rejected(f, { signed: ["date", "(request-target)"] }, /lack host/),
    );
    await t.step(
      "(request-target) not signed",
      () => rejected(f, { signed: ["date", "host"] }, /lack \(request-target\)/),
    );
    await t.step("signed for one query, sent with another", async () => {
      const headers = await signedHeaders({
        method: "GET",
        url: `https://${IAD}/20180419/docker/token?scope=a`,
        keyId: `ST$${f.st.token}`,
        privateKey: f.st.session.privateKey,
      });
      const res = await fetch(`https://${IAD}/20180419/docker/token?scope=b`, {
        headers,
        client: f.client,
      });
      assert.equal(res.status, 401);
      await res.body?.cancel();
      assert.match(lastReason(f), /signature does not verify/);
    });
    await t.step(
      "keyId that is not ST$",
      () => rejected(f, { keyId: "ocid1.tenancy.oc1..x/ocid1.user.oc1..y/ab:cd" }, /not ST\$/),
    );
    await t.step("a security token from another realm's auth service", async () => {
      const gov = "ocir.us-langley-1.oci.oraclegovcloud.com";
      await rejected(f, {}, /issued in realm oraclecloud.com, not oraclegovcloud.com/, gov);
      const govSt = await federate(
        f.client,
        f.emu.env.OCI_METADATA_BASE_URL,
        "auth.us-langley-1.oraclegovcloud.com",
      );
      assert.ok(await dockerToken(f.client, gov, govSt));
    });
    await t.step("docker tokens issued are counted", () => {
      assert.ok(f.emu.counters.dockerTokens >= 5);
    });
  },
  { dockerTokenTtl: 1800, extraRegions: [{ regionId: "us-langley-1" }] },
);

emulatorTest(
  "OCIR realm: basic BEARER_TOKEN credentials become a Distribution token per the policy",
  async (t, fx) => {
    const f = await withSecurityToken(fx);
    const ns = f.emu.namespace;
    const password = await dockerToken(f.client, IAD, f.st);
    await t.step(
      "pull granted on the tenancy's namespace, in Distribution's token format",
      async () => {
        const r = await realm(
          f,
          password,
          `account=BEARER_TOKEN&scope=repository:${ns}/app:pull&service=${IAD}`,
        );
        assert.equal(r.status, 200, JSON.stringify(r.json));
        const header = decodeProtectedHeader(r.json.token);
        assert.equal(header.alg, "RS256");
        assert.ok(Array.isArray(header.x5c) && header.x5c.length >= 1);
        // x5c holds standard base64 DER, leaf first; here the CA in the bundle signs itself.
        assert.match(header.x5c[0], /^[A-Za-z0-9+/]+=*$/);
        const signer = new x509.X509Certificate(Uint8Array.fromBase64(header.x5c[0]));
        const bundle = new x509.X509Certificate(f.emu.registryTokenCa);
        assert.ok(await signer.verify({ publicKey: bundle, signatureOnly: true }));
        const key = await signer.publicKey.export(
          { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
          ["verify"],
        );
        const { payload } = await jwtVerify(r.json.token, key, {
          issuer: f.emu.registryIssuer,
          audience: IAD,
        });
        assert.equal(typeof payload.aud, "string", "Distribution rejects an array aud");
        assert.ok(Number.isInteger(payload.exp));
        assert.deepEqual(payload.access, [{
          type: "repository",
          name: `${ns}/app`,
          actions: ["pull"],
        }]);
        assert.equal(await Deno.readTextFile(f.emu.registryTokenCaFile), f.emu.registryTokenCa);
      },
    );
    await t.step("push is not granted by the default policy, and the log says so", async () => {
      const r = await realm(f, password, `scope=repository:${ns}/app:pull,push&service=${IAD}`);
      assert.equal(r.status, 200);
      assert.deepEqual(decodeJwt(r.json.token).access, [{
        type: "repository",
        name: `${ns}/app`,
        actions: ["pull"],
      }]);
      assert.match(r.reason, /policy denied repository:emutenancy\/app:push/);
    });
    await t.step("repeated scope parameters, another namespace denied", async () => {
      const r = await realm(
        f,
        password,
        `scope=repository:${ns}/a:pull&scope=repository:other/b:pull&scope=repository:${ns}/a:pull`,
      );
      assert.equal(r.status, 200);
      assert.deepEqual(decodeJwt(r.json.token).access, [{
        type: "repository",
        name: `${ns}/a`,
        actions: ["pull"],
      }]);
      assert.match(r.reason, /policy denied repository:other\/b:pull/);
    });
    await t.step("setPolicy: deny everything, then allow push", async () => {
      f.emu.setPolicy(() => false);
      const denied = await realm(f, password, `scope=repository:${ns}/app:pull`);
      assert.deepEqual(decodeJwt(denied.json.token).access, []);
      f.emu.setPolicy((who, repo, action) =>
        who.instanceId === f.emu.instance.instanceId && repo.namespace === ns &&
        repo.name === "app" &&
        ["pull", "push"].includes(action)
      );
      const both = await realm(f, password, `scope=repository:${ns}/app:pull,push`);
      assert.deepEqual(decodeJwt(both.json.token).access, [{
        type: "repository",
        name: `${ns}/app`,
        actions: ["pull", "push"],
      }]);
    });
    await t.step(
      "wrong password",
      () => realmRejected(realm(f, "not-a-token", "scope=x"), /docker token: /),
    );
    await t.step(
      "tampered docker token",
      () =>
        realmRejected(
          realm(f, password.slice(0, -4) + "AAAA", "scope=x"),
          /docker token: signature/,
        ),
    );
    await t.step(
      "user other than BEARER_TOKEN",
      () => realmRejected(realm(f, password, "scope=x", { user: "admin" }), /is not BEARER_TOKEN/),
    );
    await t.step("no credentials", async () => {
      const res = await fetch(`https://${IAD}/20180419/docker/token?scope=x`, {
        client: f.client,
      });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).errors[0].code, "UNAUTHORIZED");
      assert.match(lastReason(f), /no credentials/);
    });
    await t.step(
      "a docker token issued for another registry host",
      () =>
        realmRejected(
          realm(f, password, "scope=x", { host: "ocir.us-ashburn-1.oci.oraclecloud.com" }),
          /docker token: .*"aud"/,
        ),
    );
    await t.step(
      "service parameter naming another registry",
      () =>
        realmRejected(
          realm(f, password, "service=fra.ocir.io"),
          /service fra.ocir.io is not this registry/,
        ),
    );
    await t.step("expired docker token", async () => {
      f.emu.fault("ocir", { clockSkewSec: 3700 });
      try {
        await realmRejected(realm(f, password, "scope=x"), /docker token: .*"exp"/);
      } finally {
        f.emu.clearFaults();
      }
    });
  },
  { dockerTokenTtl: 3600 },
);

emulatorTest(
  "OCIR /v2/: Bearer challenge without a registry, reverse proxy with one",
  async (t, { emu, client }) => {
    const seen: {
      host: string | null;
      proto: string | null;
      method: string;
      path: string;
      body: string;
    }[] = [];
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const url = new URL(req.url);
      seen.push({
        host: req.headers.get("host"),
        proto: req.headers.get("x-forwarded-proto"),
        method: req.method,
        path: url.pathname + url.search,
        body: await req.text(),
      });
      return new Response('{"ok":true}', {
        status: 201,
        headers: {
          location: `https://${IAD}/v2/ns/app/blobs/uploads/1`,
          "docker-distribution-api-version": "registry/2.0",
        },
      });
    });
    try {
      await t.step("no token: 401 with the realm challenge", async () => {
        const res = await fetch(`https://${IAD}/v2/`, { client });
        assert.equal(res.status, 401);
        assert.equal(
          res.headers.get("www-authenticate"),
          `Bearer realm="https://${IAD}/20180419/docker/token",service="${IAD}"`,
        );
        assert.equal(res.headers.get("docker-distribution-api-version"), "registry/2.0");
        assert.equal((await res.json()).errors[0].code, "UNAUTHORIZED");
      });
      await t.step("an admin token opens /v2/; a repository path wants its scope", async () => {
        const token = await emu.mintRegistryToken(IAD, `repository:${emu.namespace}/app:pull,push`);
        const ok = await fetch(`https://${IAD}/v2/`, {
          client,
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(ok.status, 200);
        await ok.body?.cancel();
        const other = await fetch(`https://${IAD}/v2/other/repo/manifests/1`, {
          client,
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(other.status, 401);
        assert.match(
          other.headers.get("www-authenticate") ?? "",
          /scope="repository:other\/repo:pull",error="insufficient_scope"/,
        );
        await other.body?.cancel();
        const claims = decodeJwt(token);
        assert.equal(claims.iss, emu.registryIssuer);
        assert.equal(claims.aud, IAD);
      });
      await t.step(
        "with an upstream: forwarded keeping Host, adding X-Forwarded-Proto",
        async () => {
          emu.setRegistryUpstream(IAD, `http://127.0.0.1:${upstream.addr.port}`);
          const res = await fetch(`https://${IAD}/v2/ns/app/blobs/uploads/?mount=x&from=y`, {
            method: "POST",
            body: "layer bytes",
            client,
            headers: { authorization: "Bearer whatever" },
          });
          assert.equal(res.status, 201);
          assert.equal(res.headers.get("location"), `https://${IAD}/v2/ns/app/blobs/uploads/1`);
          assert.deepEqual(await res.json(), { ok: true });
          assert.deepEqual(seen.at(-1), {
            host: IAD,
            proto: "https",
            method: "POST",
            path: "/v2/ns/app/blobs/uploads/?mount=x&from=y",
            body: "layer bytes",
          });
          emu.setRegistryUpstream(IAD, null);
          const back = await fetch(`https://${IAD}/v2/`, { client });
          assert.equal(back.status, 401);
          await back.body?.cancel();
        },
      );
      await t.step("only registry hosts take an upstream", () => {
        assert.throws(
          () => emu.setRegistryUpstream(AUTH, "http://127.0.0.1:1"),
          /not a registry host/,
        );
      });
    } finally {
      await upstream.shutdown();
    }
  },
);
