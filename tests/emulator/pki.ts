/**
 * Keys and certificates of the emulated cloud: the instance identity chain (root → intermediate
 * → leaf), the TLS CA and server certificate for every served host, and the CA that signs
 * Distribution access tokens. Certificates come from @peculiar/x509; no hand-written ASN.1.
 */
import * as x509 from "@peculiar/x509";
import { Buffer } from "node:buffer";
import { createPrivateKey } from "node:crypto";
import { encodeBase64 } from "./util.ts";

x509.cryptoProvider.set(crypto);

const RSA: RsaHashedKeyGenParams = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
};
const EC: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const HOUR = 3600_000;
const YEAR = 365 * 24 * HOUR;

/** A fresh RSA-2048 signing key pair (about 300 ms of CPU). */
export function rsaKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(RSA, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** The keys that belong to the cloud rather than to an instance. */
export interface ServiceKeys {
  instanceRoot: CryptoKeyPair;
  intermediate: CryptoKeyPair;
  /** Signs security tokens (auth service). */
  auth: CryptoKeyPair;
  /** Signs OCIR docker tokens. */
  ocir: CryptoKeyPair;
  /** Registry token CA; also signs Distribution tokens itself (x5c = [CA]). */
  registry: CryptoKeyPair;
  tlsCa: CryptoKeyPair;
  tlsServer: CryptoKeyPair;
}

let serviceKeysOnce: Promise<ServiceKeys> | undefined;

/**
 * The cloud's own keys, made once per process: real OCI keeps them across instances, and
 * several emulators in one test process then start without paying for RSA generation again.
 */
export function serviceKeys(): Promise<ServiceKeys> {
  serviceKeysOnce ??= (async () => {
    const ec = () =>
      crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
    const [instanceRoot, intermediate, auth, ocir, registry, tlsCa, tlsServer] = await Promise.all([
      rsaKeyPair(),
      rsaKeyPair(),
      rsaKeyPair(),
      rsaKeyPair(),
      rsaKeyPair(),
      ec(), // TLS needs no RSA, and P-256 keys are made in microseconds
      ec(),
    ]);
    return { instanceRoot, intermediate, auth, ocir, registry, tlsCa, tlsServer };
  })();
  return serviceKeysOnce;
}

/** A certificate with the key that certifies it. */
export interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  bytes[0] &= 0x7f; // positive INTEGER
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function caExtensions(keys: CryptoKeyPair, pathLength?: number): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign |
        x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
}

/** A self-signed CA certificate valid from an hour ago for ten years. */
export async function selfSignedCa(name: string, keys: CryptoKeyPair): Promise<Issued> {
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    keys,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 10 * YEAR),
    signingAlgorithm: keys.privateKey.algorithm,
    extensions: await caExtensions(keys),
  });
  return { cert, keys };
}

/** The instance identity CAs: a root and the one intermediate it signs. */
export async function instanceCas(
  keys: ServiceKeys,
): Promise<{ root: Issued; intermediate: Issued }> {
  const root = await selfSignedCa("CN=Emulated OCI Instance Root CA", keys.instanceRoot);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "CN=Emulated OCI Instance Intermediate CA",
    issuer: root.cert.subject,
    publicKey: keys.intermediate.publicKey,
    signingKey: root.keys.privateKey,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 5 * YEAR),
    signingAlgorithm: RSA,
    extensions: [
      ...await caExtensions(keys.intermediate, 0),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert),
    ],
  });
  return { root, intermediate: { cert, keys: keys.intermediate } };
}

/** Who an instance certificate speaks for. */
export interface InstanceIds {
  tenancy: string;
  compartment: string;
  instanceId: string;
}

/** How to shape a leaf certificate. */
export interface LeafOptions {
  /** All OU values in one multi-valued RDN (as real certificates have) or one RDN each. */
  multiValuedRdn: boolean;
  /** "opc-tenant" (usual) or "opc-identity". */
  tenantPrefix: string;
  /** Make a certificate whose validity ended an hour ago. */
  expired?: boolean;
}

/** An instance leaf: certificate plus the private key as IMDS serves it. */
export interface Leaf extends Issued {
  /** PKCS#1 `RSA PRIVATE KEY` PEM, like IMDS's identity/key.pem. */
  keyPem: string;
}

/** Issues an instance leaf certificate (subject OUs carry the OCIDs) under the intermediate. */
export async function instanceLeaf(
  ids: InstanceIds,
  intermediate: Issued,
  keys: CryptoKeyPair,
  opts: LeafOptions,
): Promise<Leaf> {
  const ous = [
    "opc-certtype:instance",
    `opc-compartment:${ids.compartment}`,
    `opc-instance:${ids.instanceId}`,
    `${opts.tenantPrefix}:${ids.tenancy}`,
  ];
  const subject: x509.JsonName = [
    { CN: [ids.instanceId] },
    ...(opts.multiValuedRdn ? [{ OU: ous }] : ous.map((ou) => ({ OU: [ou] }))),
  ];
  const now = Date.now();
  // Real leaves live for hours and rotate; an expired one ended an hour ago.
  const notBefore = new Date(opts.expired ? now - 3 * HOUR : now - 5 * 60_000);
  const notAfter = new Date(opts.expired ? now - HOUR : now + 24 * HOUR);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: intermediate.cert.subject,
    publicKey: keys.publicKey,
    signingKey: intermediate.keys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(intermediate.cert),
    ],
  });
  return { cert, keys, keyPem: await pkcs1Pem(keys.privateKey) };
}

/** PKCS#1 PEM of an RSA private key (WebCrypto exports only PKCS#8; node:crypto converts). */
export async function pkcs1Pem(key: CryptoKey): Promise<string> {
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
  const pem = createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" })
    .export({ type: "pkcs1", format: "pem" });
  return String(pem);
}

/** PKCS#8 `PRIVATE KEY` PEM (what Deno.serve wants for its TLS key). */
export async function pkcs8Pem(key: CryptoKey): Promise<string> {
  return pem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

/** PEM armour around DER bytes. */
export function pem(label: string, der: Uint8Array): string {
  const b64 = encodeBase64(der).replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** TLS material: a CA and one server certificate naming every served host. */
export interface Tls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** Makes the TLS CA and a server certificate whose SANs list each host explicitly. */
export async function tlsMaterial(keys: ServiceKeys, hosts: string[]): Promise<Tls> {
  const ca = await selfSignedCa("CN=OCI Emulator TLS CA", keys.tlsCa);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${hosts[0]}`,
    issuer: ca.cert.subject,
    publicKey: keys.tlsServer.publicKey,
    signingKey: keys.tlsCa.privateKey,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + YEAR),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        hosts.map((value) => ({ type: "dns" as const, value })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  return {
    caPem: ca.cert.toString("pem") + "\n",
    certPem: cert.toString("pem") + "\n",
    keyPem: await pkcs8Pem(keys.tlsServer.privateKey),
  };
}

/** Colon-separated hex of a digest of the certificate's DER, e.g. "ab:cd:…" (lower case). */
export async function fingerprint(
  cert: x509.X509Certificate,
  hash: "SHA-256" | "SHA-1",
): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(hash, cert.rawData));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(":");
}
