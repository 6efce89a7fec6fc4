import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { children, encode, oid, readElement } from "../lib/der.ts";
import { PluginError } from "../lib/errors.ts";
import { instanceIdentity } from "../lib/identity.ts";
import {
  assertKeyMatches,
  fingerprint,
  importPrivateKey,
  parseCertificate,
  pemToDer,
  rsaModulus,
  subjectValue,
  tenancyOf,
} from "../lib/x509.ts";

x509.cryptoProvider.set(crypto);
const RSA = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
};
const [leafKeys, otherKeys] = await Promise.all([
  crypto.subtle.generateKey(RSA, true, ["sign", "verify"]),
  crypto.subtle.generateKey(RSA, true, ["sign", "verify"]),
]);
const tenancy = "ocid1.tenancy.oc1..aaaatenancy";

async function certificate(subject: string, days = 1) {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: subject,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + days * 86400_000),
    keys: leafKeys,
    signingAlgorithm: RSA,
  });
  return cert.toString("pem");
}

const multiValued =
  `CN=ocid1.instance.oc1.iad.x, OU=opc-certtype:instance+OU=opc-compartment:ocid1.compartment.oc1..c+OU=opc-instance:ocid1.instance.oc1.iad.x+OU=opc-tenant:${tenancy}`;
const pem = (label: string, der: ArrayBuffer | Uint8Array) =>
  `-----BEGIN ${label}-----\n${
    new Uint8Array(der).toBase64().match(/.{1,64}/g)!.join("\n")
  }\n-----END ${label}-----\n`;
const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", leafKeys.privateKey));
// PKCS#1 is the OCTET STRING inside PKCS#8: the form IMDS serves.
const pkcs1 = children(readElement(pkcs8))[2].body;

Deno.test("parseCertificate reads every value of a multi-valued RDN", async () => {
  const cert = parseCertificate(await certificate(multiValued), "leaf");
  assert.deepEqual(cert.subjectValues, [
    "ocid1.instance.oc1.iad.x",
    "opc-certtype:instance",
    "opc-compartment:ocid1.compartment.oc1..c",
    "opc-instance:ocid1.instance.oc1.iad.x",
    `opc-tenant:${tenancy}`,
  ]);
  assert.equal(tenancyOf(cert.subjectValues), tenancy);
  assert.equal(subjectValue(cert.subjectValues, "opc-compartment"), "ocid1.compartment.oc1..c");
  assert.ok(cert.notAfter.getTime() > Date.now() && cert.notBefore.getTime() < Date.now());
});

Deno.test("parseCertificate reads one-value RDNs too, and opc-identity as the fallback tenancy", async () => {
  const cert = parseCertificate(
    await certificate(`CN=x, OU=opc-certtype:instance, OU=opc-identity:${tenancy}`),
    "leaf",
  );
  assert.equal(tenancyOf(cert.subjectValues), tenancy);
  assert.throws(() => tenancyOf(["opc-certtype:instance"]), /no opc-tenant or opc-identity/);
});

Deno.test("fingerprint is SHA-256 of the DER as lower-case colon hex, like openssl's", async () => {
  const text = await certificate(multiValued);
  const cert = parseCertificate(text, "leaf");
  const path = await Deno.makeTempFile();
  await Deno.writeTextFile(path, text);
  const out = await new Deno.Command("openssl", {
    args: ["x509", "-noout", "-fingerprint", "-sha256", "-in", path],
  }).output();
  await Deno.remove(path);
  const expected = new TextDecoder().decode(out.stdout).trim().split("=")[1].toLowerCase();
  assert.equal(await fingerprint(cert.der), expected);
  assert.match(expected, /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
});

Deno.test("importPrivateKey takes PKCS#1 and PKCS#8 and proves the key matches", async () => {
  const cert = parseCertificate(await certificate(multiValued), "leaf");
  for (const text of [pem("RSA PRIVATE KEY", pkcs1), pem("PRIVATE KEY", pkcs8)]) {
    const key = await importPrivateKey(text, "key");
    assertKeyMatches(cert, key);
    const data = new TextEncoder().encode("signed");
    const signature = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", key.key, data);
    assert.ok(await crypto.subtle.verify("RSASSA-PKCS1-v1_5", leafKeys.publicKey, signature, data));
  }
  const other = await importPrivateKey(
    pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", otherKeys.privateKey)),
    "key",
  );
  assert.throws(() => assertKeyMatches(cert, other), /does not match the instance certificate/);
  assert.equal(rsaModulus(cert.spki).length, 256);
});

Deno.test("truncated or foreign PEM fails as an identity error, never a crash", async () => {
  const cert = await certificate(multiValued);
  const cases: [() => unknown, RegExp][] = [
    [() => parseCertificate(cert.slice(0, cert.length / 2), "leaf"), /not a PEM CERTIFICATE/],
    [() => parseCertificate("<html>rate limited</html>", "leaf"), /not a PEM CERTIFICATE/],
    [
      () => parseCertificate(pem("CERTIFICATE", new Uint8Array([0x30, 0x82, 0x01])), "leaf"),
      /not a valid X.509/,
    ],
    [
      () =>
        parseCertificate(
          pem("CERTIFICATE", pemToDer(cert, ["CERTIFICATE"], "x").der.subarray(0, 300)),
          "leaf",
        ),
      /not a valid X.509/,
    ],
    [
      () => parseCertificate(cert.replace(/\n[A-Za-z0-9+/]{10}/, "\n!!!!!!!!!!"), "leaf"),
      /not base64/,
    ],
    [() => parseCertificate(pem("RSA PRIVATE KEY", pkcs1), "leaf"), /not a PEM CERTIFICATE/],
  ];
  for (const [run, pattern] of cases) {
    assert.throws(
      run,
      (e) => e instanceof PluginError && e.step === "identity" && pattern.test(e.message),
    );
  }
  await assert.rejects(
    importPrivateKey(pem("RSA PRIVATE KEY", pkcs1.subarray(0, 100)), "key"),
    /not a valid RSA private key/,
  );
  await assert.rejects(importPrivateKey(cert, "key"), /not a PEM RSA PRIVATE KEY or PRIVATE KEY/);
});

Deno.test("instanceIdentity refuses an expired leaf, naming the clock", async () => {
  const expired = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "02",
    name: multiValued,
    notBefore: new Date(Date.now() - 7200_000),
    notAfter: new Date(Date.now() - 3600_000),
    keys: leafKeys,
    signingAlgorithm: RSA,
  });
  const docs = {
    certificatePem: expired.toString("pem"),
    privateKeyPem: pem("RSA PRIVATE KEY", pkcs1),
    intermediatePem: expired.toString("pem"),
    region: {
      regionKey: "iad",
      regionId: "us-ashburn-1",
      realmKey: "oc1",
      realmDomain: "oraclecloud.com",
    },
  };
  await assert.rejects(instanceIdentity(docs), /valid from .* not now .*check the node's clock/);
  const fresh = { ...docs, certificatePem: await certificate(multiValued) };
  const identity = await instanceIdentity(fresh);
  assert.equal(identity.tenancy, tenancy);
  assert.equal(identity.instance, "ocid1.instance.oc1.iad.x");
});

Deno.test("der encodes lengths in every form and decodes OIDs", () => {
  for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536]) {
    const element = readElement(encode(0x04, new Uint8Array(size)));
    assert.equal(element.body.length, size);
  }
  assert.equal(
    oid(new Uint8Array([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01])),
    "1.2.840.113549.1.1.1",
  );
  assert.throws(() => readElement(new Uint8Array([0x30, 0x05, 0x01])), /runs past the end/);
  assert.throws(() => readElement(new Uint8Array([0x30])), /truncated/);
  assert.throws(
    () => readElement(new Uint8Array([0x30, 0x85, 1, 1, 1, 1, 1])),
    /unsupported length/,
  );
});
