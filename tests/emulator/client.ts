/**
 * A small, independent OCI client for tests and the demo: an HTTP client routed like a plugin
 * process would be (through the emulator's proxy, trusting its CA), a WebCrypto request signer
 * whose every knob can be turned wrong on purpose, and federation / docker-token helpers built
 * on it. It shares nothing with lib/.
 */
import * as x509 from "@peculiar/x509";
import { createPrivateKey } from "node:crypto";
import { encodeBase64, httpDate, sha256Base64 } from "./util.ts";

/** Where a client reaches the emulator. */
export interface ClientEnv {
  HTTPS_PROXY: string;
  DENO_CERT: string;
}

/** An HTTP client that goes through the emulator's CONNECT proxy and trusts its TLS CA. */
export async function emulatorClient(env: ClientEnv): Promise<Deno.HttpClient> {
  return Deno.createHttpClient({
    proxy: { url: env.HTTPS_PROXY },
    caCerts: [await Deno.readTextFile(env.DENO_CERT)],
  });
}

/** How to sign one request; defaults follow the OCI signature v1 rules. */
export interface SignOptions {
  method: string;
  url: string;
  keyId: string;
  privateKey: CryptoKey;
  body?: string;
  /** Extra headers to send (and sign when listed). */
  headers?: Record<string, string>;
  /** Header names to sign. Default: GET `date (request-target) host`, POST adds the body trio. */
  signed?: string[];
  /** "date" (default) or "x-date": which header carries the time. */
  dateHeader?: "date" | "x-date";
  /** Time to put in the date header, ms. Default now. */
  time?: number;
  /** Overrides the x-content-sha256 value (to send a wrong one). */
  contentSha256?: string;
  /** Overrides the whole Authorization header parameters string (after `Signature `). */
  authorization?: (params: string) => string;
}

/** The headers of a signed request (Authorization, date, host, body headers). */
export async function signedHeaders(o: SignOptions): Promise<Headers> {
  const url = new URL(o.url);
  const headers = new Headers(o.headers);
  const dateHeader = o.dateHeader ?? "date";
  headers.set(dateHeader, httpDate(o.time ?? Date.now()));
  headers.set("host", url.host);
  const hasBody = o.body !== undefined;
  if (hasBody) {
    const bytes = new TextEncoder().encode(o.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    headers.set("content-length", String(bytes.length));
    headers.set("x-content-sha256", o.contentSha256 ?? await sha256Base64(bytes));
  }
  const names = o.signed ??
    [dateHeader, "(request-target)", "host"].concat(
      hasBody ? ["content-length", "content-type", "x-content-sha256"] : [],
    );
  const text = names.map((n) =>
    n === "(request-target)"
      ? `${n}: ${o.method.toLowerCase()} ${url.pathname}${url.search}`
      : `${n}: ${headers.get(n)}`
  ).join("\n");
  const sig = await crypto.subtle.sign(
    "RSASSA-PKCS1-v1_5",
    o.privateKey,
    new TextEncoder().encode(text),
  );
  const params = `version="1",keyId="${o.keyId}",algorithm="rsa-sha256",headers="${
    names.join(" ")
  }",signature="${encodeBase64(new Uint8Array(sig))}"`;
  headers.set("authorization", `Signature ${o.authorization ? o.authorization(params) : params}`);
  // fetch sets host itself; keeping ours would be ignored anyway.
  headers.delete("host");
  return headers;
}

/** Sends a signed request through client. */
export async function signedFetch(client: Deno.HttpClient, o: SignOptions): Promise<Response> {
  return fetch(o.url, {
    method: o.method,
    headers: await signedHeaders(o),
    body: o.body,
    client,
  });
}

/** An instance identity as fetched from IMDS. */
export interface Identity {
  leaf: x509.X509Certificate;
  intermediate: x509.X509Certificate;
  leafKey: CryptoKey;
  tenancy: string;
}

/** Reads the identity from the emulator's IMDS (base = OCI_METADATA_BASE_URL). */
export async function fetchIdentity(base: string): Promise<Identity> {
  const get = async (path: string) => {
    const res = await fetch(`${base}/${path}`, { headers: { authorization: "Bearer Oracle" } });
    if (!res.ok) throw new Error(`IMDS ${path}: ${res.status}`);
    return res.text();
  };
  const leaf = new x509.X509Certificate(await get("identity/cert.pem"));
  const intermediate = new x509.X509Certificate(await get("identity/intermediate.pem"));
  const leafKey = await importPkcs1(await get("identity/key.pem"));
  const ou = leaf.subjectName.toJSON().flatMap((rdn) => rdn.OU ?? []);
  const tenancy = ou.find((v) => v.startsWith("opc-tenant:"))?.slice("opc-tenant:".length) ?? "";
  return { leaf, intermediate, leafKey, tenancy };
}

/** Imports a PKCS#1 RSA private key PEM (wrapping it as PKCS#8 via node:crypto). */
export function importPkcs1(pemText: string): Promise<CryptoKey> {
  const der = createPrivateKey(pemText).export({ type: "pkcs8", format: "der" });
  return crypto.subtle.importKey(
    "pkcs8",
    new Uint8Array(der),
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** Colon hex fingerprint of a certificate. */
export async function certFingerprint(
  cert: x509.X509Certificate,
  hash: "SHA-256" | "SHA-1",
): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest(hash, cert.rawData));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** A session key pair (RSA-2048) and its SPKI base64. */
export async function sessionKeyPair(): Promise<{ keys: CryptoKeyPair; spki: string }> {
  const keys = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const spki = encodeBase64(new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)));
  return { keys, spki };
}

/** The federation request body for an identity and session public key. */
export function federationBody(id: Identity, spki: string): string {
  return JSON.stringify({
    certificate: encodeBase64(new Uint8Array(id.leaf.rawData)),
    publicKey: spki,
    intermediateCertificates: [encodeBase64(new Uint8Array(id.intermediate.rawData))],
    fingerprintAlgorithm: "SHA256",
  });
}

/** The keyId a federation request is signed under (SHA-256 form). */
export async function federationKeyId(id: Identity): Promise<string> {
  return `${id.tenancy}/fed-x509-sha256/${await certFingerprint(id.leaf, "SHA-256")}`;
}

/** Federates the way the Go SDK does; returns the security token and session keys. */
export async function federate(
  client: Deno.HttpClient,
  imdsBase: string,
  authHost: string,
): Promise<{ token: string; session: CryptoKeyPair }> {
  const id = await fetchIdentity(imdsBase);
  const { keys, spki } = await sessionKeyPair();
  const res = await signedFetch(client, {
    method: "POST",
    url: `https://${authHost}/v1/x509`,
    keyId: await federationKeyId(id),
    privateKey: id.leafKey,
    body: federationBody(id, spki),
    signed: ["date", "(request-target)", "content-length", "content-type", "x-content-sha256"],
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`federation: ${res.status} ${JSON.stringify(body)}`);
  return { token: body.token, session: keys };
}

/** Gets an OCIR docker token with a security token. */
export async function dockerToken(
  client: Deno.HttpClient,
  registryHost: string,
  st: { token: string; session: CryptoKeyPair },
): Promise<string> {
  const res = await signedFetch(client, {
    method: "GET",
    url: `https://${registryHost}/20180419/docker/token`,
    keyId: `ST$${st.token}`,
    privateKey: st.session.privateKey,
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`docker token: ${res.status} ${JSON.stringify(body)}`);
  return body.token;
}
