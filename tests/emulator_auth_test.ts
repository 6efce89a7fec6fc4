/**
 * The emulated auth service's federation endpoint: it accepts each official SDK's request
 * shape and rejects every request that breaks one of its rules, saying why in the log.
 * Requests are built here with the emulator's own test client (WebCrypto), never with lib/.
 */
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { decodeJwt } from "jose";
import type { Emulator } from "./emulator/mod.ts";
import { type EmulatorFixture, emulatorTest } from "./support/emulator.ts";
import {
  certFingerprint,
  fetchIdentity,
  type Identity,
  sessionKeyPair,
  signedFetch,
  type SignOptions,
} from "./emulator/client.ts";
import { encodeBase64 } from "./emulator/util.ts";

const AUTH = "https://auth.us-ashburn-1.oraclecloud.com/v1/x509";
const BODY_HEADERS = ["content-length", "content-type", "x-content-sha256"];
const GO_HEADERS = ["date", "(request-target)", ...BODY_HEADERS];

interface Fixture {
  emu: Emulator;
  client: Deno.HttpClient;
  id: Identity;
  session: { keys: CryptoKeyPair; spki: string };
}

/** A federation request shaped like the Go SDK's, with any part replaced. */
interface Variant extends Partial<SignOptions> {
  id?: Identity;
  bodyObject?: (body: Record<string, unknown>) => unknown;
}

function bodyOf(f: Fixture, id: Identity): Record<string, unknown> {
  return {
    certificate: encodeBase64(new Uint8Array(id.leaf.rawData)),
    publicKey: f.session.spki,
    intermediateCertificates: [encodeBase64(new Uint8Array(id.intermediate.rawData))],
    fingerprintAlgorithm: "SHA256",
  };
}

async function federation(f: Fixture, v: Variant = {}) {
  const id = v.id ?? f.id;
  const body = bodyOf(f, id);
  const res = await signedFetch(f.client, {
    method: "POST",
    url: AUTH,
    keyId: `${id.tenancy}/fed-x509-sha256/${await certFingerprint(id.leaf, "SHA-256")}`,
    privateKey: id.leafKey,
    signed: GO_HEADERS,
    ...v,
    body: v.body ?? JSON.stringify(v.bodyObject ? v.bodyObject(body) : body),
  });
  const json = await res.json();
  const entry = f.emu.requests.findLast((r) => r.service === "auth");
  return { status: res.status, json, reason: entry?.reason ?? "" };
}

/** Asserts a refusal: status, OCI error code, and a log reason matching the pattern. */
async function rejected(f: Fixture, v: Variant, reason: RegExp, status = 401) {
  const r = await federation(f, v);
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json.code, status === 401 ? "NotAuthenticated" : r.json.code);
  assert.match(r.reason, reason);
  assert.equal(r.json.message, r.reason, "the answer says what the log says");
}

/** A self-made CA and leaf claiming the emulator's tenancy (one key for both, to stay fast). */
async function rogueIdentity(f: Fixture): Promise<Identity> {
  const keys = f.session.keys;
  const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: f.id.intermediate.subject, // the real intermediate's name, but not its key
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const leaf = await x509.X509CertificateGenerator.create({
    subject: f.id.leaf.subject,
    issuer: ca.subject,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: alg,
  });
  return { leaf, intermediate: ca, leafKey: keys.privateKey, tenancy: f.id.tenancy };
}

/** The emulator test's fixture with the instance identity from IMDS and a session key. */
async function withIdentity({ emu, client }: EmulatorFixture): Promise<Fixture> {
  const id = await fetchIdentity(emu.env.OCI_METADATA_BASE_URL);
  return { emu, client, id, session: await sessionKeyPair() };
}

emulatorTest(
  "auth accepts each SDK's federation request shape",
  async (t, fx) => {
    const { emu } = fx;
    const f = await withIdentity(fx);
    await t.step("Go: fed-x509-sha256, date, fingerprintAlgorithm, no host", async () => {
      const r = await federation(f);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const claims = decodeJwt(r.json.token);
      assert.equal(claims.iss, "authService.oracle.com");
      assert.equal(claims.sub, emu.instance.instanceId);
      assert.equal(claims.tenant, emu.instance.tenancy);
      assert.equal(claims["opc-tenant"], emu.instance.tenancy);
      assert.equal(claims["opc-instance"], emu.instance.instanceId);
      assert.equal(claims["opc-compartment"], emu.instance.compartment);
      assert.equal(claims["opc-certtype"], "instance");
      assert.equal(claims.ptype, "instance");
      assert.equal(claims.ttype, "x509");
      assert.equal(claims.exp! - claims.iat!, 900);
      const jwk = claims.jwk as JsonWebKey;
      const spki = await crypto.subtle.exportKey("spki", f.session.keys.publicKey);
      const own = await crypto.subtle.exportKey(
        "jwk",
        await crypto.subtle.importKey(
          "spki",
          spki,
          { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
          true,
          ["verify"],
        ),
      );
      assert.equal(jwk.n, own.n, "jwk is the session public key");
      assert.equal(jwk.e, own.e);
    });
    await t.step("Python: fed-x509 with upper-case SHA-1, no fingerprintAlgorithm", async () => {
      const fp = (await certFingerprint(f.id.leaf, "SHA-1")).toUpperCase();
      const r = await federation(f, {
        keyId: `${f.id.tenancy}/fed-x509/${fp}`,
        bodyObject: ({ fingerprintAlgorithm: _, ...rest }) => rest,
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });
    await t.step("TypeScript: lower-case SHA-1, x-date, host signed, purpose", async () => {
      const fp = await certFingerprint(f.id.leaf, "SHA-1");
      const r = await federation(f, {
        keyId: `${f.id.tenancy}/fed-x509/${fp}`,
        dateHeader: "x-date",
        signed: ["x-date", "(request-target)", "host", ...BODY_HEADERS],
        bodyObject: ({ fingerprintAlgorithm: _, ...rest }) => ({ ...rest, purpose: "DEFAULT" }),
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });
    await t.step("a date 4 minutes off is still inside the 5-minute window", async () => {
      assert.equal((await federation(f, { time: Date.now() - 240_000 })).status, 200);
      assert.equal((await federation(f, { time: Date.now() + 240_000 })).status, 200);
    });
    await t.step("counters count issued tokens only", async () => {
      const before = emu.counters.federations;
      await federation(f);
      await federation(f, { signed: ["date", "(request-target)"] });
      assert.equal(emu.counters.federations, before + 1);
    });
  },
  { tokenTtl: 900 },
);

emulatorTest(
  "auth rejects a request that breaks a rule, and logs why",
  async (t, fx) => {
    const { emu, client } = fx;
    const f = await withIdentity(fx);
    const step = (name: string, fn: () => Promise<void>) => t.step(name, fn);
    await step(
      "bad signature",
      () =>
        rejected(f, {
          authorization: (p) => p.replace(/signature="[^"]{8}/, 'signature="AAAAAAAA'),
        }, /signature does not verify/),
    );
    await step(
      "signed with another key than the leaf's",
      () => rejected(f, { privateKey: f.session.keys.privateKey }, /signature does not verify/),
    );
    for (const missing of ["(request-target)", ...BODY_HEADERS]) {
      await step(
        `${missing} not signed`,
        () =>
          rejected(f, {
            signed: GO_HEADERS.filter((h) => h !== missing),
          }, new RegExp(`lack ${missing.replace(/[()]/g, "\\$&")}`)),
      );
    }
    await step(
      "no date or x-date signed",
      () => rejected(f, { signed: GO_HEADERS.filter((h) => h !== "date") }, /lack date or x-date/),
    );
    await step(
      "body hash mismatch",
      () =>
        rejected(
          f,
          { contentSha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" },
          /x-content-sha256 does not match/,
        ),
    );
    await step(
      "date 6 minutes behind",
      () => rejected(f, { time: Date.now() - 360_000 }, /off the service clock/),
    );
    await step(
      "date 6 minutes ahead",
      () => rejected(f, { time: Date.now() + 360_000 }, /off the service clock/),
    );
    await step(
      "date not in RFC 7231 form",
      () =>
        rejected(f, {
          headers: { "x-date": new Date().toISOString() },
          dateHeader: "date",
          signed: ["x-date", "(request-target)", ...BODY_HEADERS],
        }, /x-date is not an RFC 7231 date/),
    );
    await step("wrong tenancy in keyId", async () => {
      const fp = await certFingerprint(f.id.leaf, "SHA-256");
      await rejected(
        f,
        { keyId: `ocid1.tenancy.oc1..aaaaaaaaother/fed-x509-sha256/${fp}` },
        /keyId tenancy .* is not the certificate's/,
      );
    });
    await step(
      "wrong SHA-256 fingerprint",
      () =>
        rejected(
          f,
          { keyId: `${f.id.tenancy}/fed-x509-sha256/${"ab:".repeat(31)}ab` },
          /SHA-256 fingerprint does not match/,
        ),
    );
    await step("upper-case SHA-256 fingerprint", async () => {
      const fp = (await certFingerprint(f.id.leaf, "SHA-256")).toUpperCase();
      await rejected(
        f,
        { keyId: `${f.id.tenancy}/fed-x509-sha256/${fp}` },
        /SHA-256 fingerprint does not match/,
      );
    });
    await step(
      "wrong SHA-1 fingerprint",
      () =>
        rejected(
          f,
          { keyId: `${f.id.tenancy}/fed-x509/${"AB:".repeat(19)}AB` },
          /SHA-1 fingerprint does not match/,
        ),
    );
    await step(
      "keyId of an API key, not fed-x509",
      () =>
        rejected(
          f,
          { keyId: `${f.id.tenancy}/ocid1.user.oc1..aaaa/12:34` },
          /is not <tenancy>\/fed-x509/,
        ),
    );
    await step(
      "no intermediate sent",
      () =>
        rejected(
          f,
          { bodyObject: (b) => ({ ...b, intermediateCertificates: [] }) },
          /no intermediate certificate issued/,
        ),
    );
    await step("broken chain: a self-made CA under the real intermediate's name", async () => {
      const rogue = await rogueIdentity(f);
      await rejected(f, { id: rogue }, /not issued by the instance root CA/);
    });
    await step("no Authorization header", async () => {
      const res = await fetch(AUTH, { method: "POST", body: "{}", client });
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), {
        code: "NotAuthenticated",
        message: "no Authorization header",
      });
    });
    await step(
      "signature parameter missing",
      () =>
        rejected(f, {
          authorization: (p) => p.replace(/,headers="[^"]*"/, ""),
        }, /parameter headers missing/),
    );
    await step(
      "algorithm other than rsa-sha256",
      () =>
        rejected(f, {
          authorization: (p) => p.replace("rsa-sha256", "hmac-sha256"),
        }, /unsupported signature algorithm/),
    );
    await step(
      "version other than 1",
      () =>
        rejected(f, {
          authorization: (p) => p.replace('version="1"', 'version="2"'),
        }, /unsupported signature version/),
    );
    await step("body not JSON: 400", () => rejected(f, { body: "{not json" }, /not JSON/, 400));
    await step(
      "certificate missing: 400",
      () =>
        rejected(
          f,
          { bodyObject: ({ certificate: _, ...rest }) => rest },
          /certificate missing/,
          400,
        ),
    );
    await step(
      "certificate with PEM line breaks: 400",
      () =>
        rejected(
          f,
          {
            bodyObject: (b) => ({
              ...b,
              certificate: String(b.certificate).replace(/.{64}/g, "$&\n"),
            }),
          },
          /not a base64 DER certificate/,
          400,
        ),
    );
    await step("session key shorter than 2048 bits: 400", async () => {
      const small = await crypto.subtle.generateKey(
        {
          name: "RSASSA-PKCS1-v1_5",
          modulusLength: 1024,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: "SHA-256",
        },
        true,
        ["sign"],
      ) as CryptoKeyPair;
      const spki = encodeBase64(
        new Uint8Array(await crypto.subtle.exportKey("spki", small.publicKey)),
      );
      await rejected(
        f,
        { bodyObject: (b) => ({ ...b, publicKey: spki }) },
        /shorter than 2048/,
        400,
      );
    });
    await step("expired leaf certificate", async () => {
      await emu.expireLeaf();
      const expired = await fetchIdentity(emu.env.OCI_METADATA_BASE_URL);
      assert.ok(expired.leaf.notAfter.getTime() < Date.now());
      await rejected(f, { id: expired }, /certificate not valid now/);
    });
    await step("a rotated leaf federates again, with a new fingerprint", async () => {
      await emu.rotateLeaf();
      const fresh = await fetchIdentity(emu.env.OCI_METADATA_BASE_URL);
      assert.notEqual(
        await certFingerprint(fresh.leaf, "SHA-256"),
        await certFingerprint(f.id.leaf, "SHA-256"),
      );
      assert.equal(fresh.tenancy, f.id.tenancy);
      assert.equal((await federation(f, { id: fresh })).status, 200);
    });
  },
);
