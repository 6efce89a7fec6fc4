import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { issuedBy, proxyFor } from "../lib/cluster_tls.ts";

x509.cryptoProvider.set(crypto);

const RSA = {
  name: "RSASSA-PKCS1-v1_5",
  hash: "SHA-256",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
};
const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function ca(name: string, alg: typeof RSA | typeof EC) {
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  return { keys, cert };
}

async function leaf(issuer: Awaited<ReturnType<typeof ca>>, alg: typeof RSA | typeof EC) {
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=proxymux",
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: alg,
  });
  return new Uint8Array(cert.rawData);
}

Deno.test("issuedBy: only a certificate the cluster CA itself signed (RSA and ECDSA)", async () => {
  for (const alg of [RSA, EC]) {
    const cluster = await ca("CN=kubernetes", alg);
    // Same name, other key: what a certificate from another trusted CA would look like at best.
    const impostor = await ca("CN=kubernetes", alg);
    const der = (c: typeof cluster) => new Uint8Array(c.cert.rawData);
    assert.equal(await issuedBy(await leaf(cluster, alg), der(cluster)), true, alg.name);
    assert.equal(await issuedBy(await leaf(impostor, alg), der(cluster)), false, alg.name);
    assert.equal(await issuedBy(await leaf(cluster, alg), der(impostor)), false, alg.name);
    assert.equal(await issuedBy(der(cluster), der(cluster)), true, "the CA itself");
    assert.equal(await issuedBy(new Uint8Array([0x30, 0x00]), der(cluster)), false, "garbage");
  }
});

Deno.test("proxyFor reads HTTPS_PROXY and NO_PROXY as fetch does", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const url = new URL("https://10.0.0.2:12250/resourcePrincipalSessionTokens");
  assert.equal(proxyFor(url, env({})), undefined);
  assert.equal(proxyFor(url, env({ HTTPS_PROXY: "http://p:3128" }))?.href, "http://p:3128/");
  assert.equal(proxyFor(url, env({ https_proxy: "p:3128" }))?.host, "p:3128");
  for (const no of ["10.0.0.2", "*", "a,10.0.0.2:12250"]) {
    assert.equal(proxyFor(url, env({ HTTPS_PROXY: "http://p:3128", NO_PROXY: no })), undefined, no);
  }
  const named = new URL("https://api.cluster.example/x");
  assert.equal(proxyFor(named, env({ HTTPS_PROXY: "http://p", no_proxy: ".example" })), undefined);
  assert.ok(proxyFor(named, env({ HTTPS_PROXY: "http://p", no_proxy: "other.example" })));
});
