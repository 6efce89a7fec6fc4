/**
 * The auth service's federation endpoint, `POST https://auth.<region>.<domain>/v1/x509`: an
 * instance proves itself with its leaf certificate (signing the request with the leaf key) and
 * receives a security token bound to a session key it chose.
 */
import * as x509 from "@peculiar/x509";
import { exportJWK, SignJWT } from "jose";
import { fingerprint, type InstanceIds } from "./pki.ts";
import { importRsaSpki, parseSignatureHeader, SignatureError, verifySignature } from "./verify.ts";
import { decodeBase64Strict, json, ociReject, Rejection } from "./util.ts";

/** Issuer of security tokens, as in real ones. */
export const TOKEN_ISSUER = "authService.oracle.com";

/** What the federation endpoint needs. */
export interface AuthState {
  /** The instance root CA that chains must end at. */
  root(): x509.X509Certificate;
  /** Signs security tokens. */
  keys: CryptoKeyPair;
  /** Security token lifetime, seconds. */
  tokenTtl: number;
  /** The `tenant` claim, when it is to differ from the certificate's tenancy (`opc-tenant` keeps it). */
  tenantClaim?: string;
}

/** A successful federation: the answer and who was federated. */
export interface Federation {
  response: Response;
  who: InstanceIds;
  jti: string;
  /** The session public key the token was bound to, base64 SPKI as sent. */
  sessionKey: string;
}

interface Body {
  certificate: string;
  publicKey: string;
  intermediateCertificates: string[];
}

/** Reads the subject's OU values, across every value of every RDN. */
export function subjectValues(cert: x509.X509Certificate, type: string): string[] {
  return cert.subjectName.toJSON().flatMap((rdn) => rdn[type] ?? []);
}

/** The OCIDs an instance leaf speaks for; the tenancy from `opc-tenant:`, else `opc-identity:`. */
export function leafIds(cert: x509.X509Certificate): Partial<InstanceIds> {
  const ous = subjectValues(cert, "OU");
  const value = (prefix: string) =>
    ous.find((v) => v.startsWith(`${prefix}:`))?.slice(prefix.length + 1);
  return {
    tenancy: value("opc-tenant") ?? value("opc-identity"),
    compartment: value("opc-compartment"),
    instanceId: value("opc-instance"),
  };
}

function parseBody(bytes: Uint8Array): Body {
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw ociReject(400, "request body is not JSON", "CannotParseRequest");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw ociReject(400, "request body is not a JSON object", "CannotParseRequest");
  }
  const b = body as Record<string, unknown>;
  if (typeof b.certificate !== "string") throw ociReject(400, "certificate missing");
  if (typeof b.publicKey !== "string") throw ociReject(400, "publicKey missing");
  const inter = b.intermediateCertificates ?? [];
  if (!Array.isArray(inter) || inter.some((c) => typeof c !== "string")) {
    throw ociReject(400, "intermediateCertificates is not an array of strings");
  }
  // Both SDK shapes are accepted: TS sends purpose, Go sends fingerprintAlgorithm.
  if (b.purpose !== undefined && typeof b.purpose !== "string") {
    throw ociReject(400, "purpose is not a string");
  }
  if (
    b.fingerprintAlgorithm !== undefined &&
    !["SHA256", "SHA1"].includes(String(b.fingerprintAlgorithm))
  ) {
    throw ociReject(400, `fingerprintAlgorithm ${JSON.stringify(b.fingerprintAlgorithm)}`);
  }
  return {
    certificate: b.certificate,
    publicKey: b.publicKey,
    intermediateCertificates: inter as string[],
  };
}

function parseCert(b64: string, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(decodeBase64Strict(b64));
  } catch {
    throw ociReject(400, `${what} is not a base64 DER certificate`);
  }
}

const unauthenticated = (reason: string) => ociReject(401, reason);

/** Checks keyId `<tenancy>/fed-x509-sha256/<fp>` or `<tenancy>/fed-x509/<sha1 fp>`. */
async function checkKeyId(keyId: string, leaf: x509.X509Certificate, tenancy: string) {
  const m = /^([^/]+)\/(fed-x509|fed-x509-sha256)\/([^/]+)$/.exec(keyId);
  if (!m) throw unauthenticated(`keyId "${keyId}" is not <tenancy>/fed-x509[-sha256]/<fp>`);
  const [, keyTenancy, form, fp] = m;
  if (keyTenancy !== tenancy) {
    throw unauthenticated(`keyId tenancy ${keyTenancy} is not the certificate's ${tenancy}`);
  }
  if (form === "fed-x509-sha256") {
    // SHA-256 fingerprints are lower-case colon hex.
    if (fp !== await fingerprint(leaf, "SHA-256")) {
      throw unauthenticated("keyId SHA-256 fingerprint does not match the certificate");
    }
  } else if (fp.toLowerCase() !== await fingerprint(leaf, "SHA-1")) {
    throw unauthenticated("keyId SHA-1 fingerprint does not match the certificate");
  }
}

/** Checks leaf → one of the intermediates → root, and every validity period at `now`. */
async function checkChain(
  leaf: x509.X509Certificate,
  intermediates: x509.X509Certificate[],
  root: x509.X509Certificate,
  now: number,
) {
  const date = new Date(now);
  const valid = (c: x509.X509Certificate) => c.notBefore <= date && date <= c.notAfter;
  if (!valid(leaf)) {
    throw unauthenticated(
      `certificate not valid now (${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()})`,
    );
  }
  for (const inter of intermediates) {
    if (inter.subject !== leaf.issuer) continue;
    if (!await leaf.verify({ publicKey: inter, signatureOnly: true })) continue;
    const bc = inter.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca) throw unauthenticated("intermediate is not a CA");
    if (!valid(inter)) throw unauthenticated("intermediate certificate not valid now");
    if (
      inter.issuer !== root.subject || !await inter.verify({ publicKey: root, signatureOnly: true })
    ) {
      throw unauthenticated("intermediate is not issued by the instance root CA");
    }
    return;
  }
  throw unauthenticated("no intermediate certificate issued the certificate");
}

/**
 * Verifies a federation request and issues a security token; throws Rejection with OCI's
 * error body (401 NotAuthenticated, 400 for malformed bodies) otherwise.
 */
export async function handleFederation(
  req: Request,
  now: number,
  state: AuthState,
): Promise<Federation> {
  const url = new URL(req.url);
  if (url.pathname !== "/v1/x509") throw ociReject(404, `${url.pathname}: not found`);
  if (req.method !== "POST") throw ociReject(405, `method ${req.method}`);
  const bytes = new Uint8Array(await req.arrayBuffer());
  let params;
  try {
    params = parseSignatureHeader(req.headers.get("authorization"));
  } catch (e) {
    throw unauthenticated((e as Error).message);
  }
  const body = parseBody(bytes);
  const leaf = parseCert(body.certificate, "certificate");
  const intermediates = body.intermediateCertificates.map((c) => parseCert(c, "intermediate"));
  let sessionKey: CryptoKey;
  try {
    sessionKey = await importRsaSpki(decodeBase64Strict(body.publicKey));
  } catch {
    throw ociReject(400, "publicKey is not a base64 DER RSA SubjectPublicKeyInfo");
  }
  if ((sessionKey.algorithm as RsaHashedKeyAlgorithm).modulusLength < 2048) {
    throw ociReject(400, "publicKey is shorter than 2048 bits");
  }
  const ids = leafIds(leaf);
  if (!ids.tenancy || !ids.compartment || !ids.instanceId) {
    throw unauthenticated("certificate subject lacks opc-tenant/opc-compartment/opc-instance");
  }
  await checkKeyId(params.keyId, leaf, ids.tenancy);
  try {
    const leafKey = await importRsaSpki(new Uint8Array(leaf.publicKey.rawData));
    await verifySignature(
      {
        method: req.method,
        target: url.pathname + url.search,
        headers: withHost(req),
        body: bytes,
      },
      params,
      leafKey,
      { required: ["content-length", "content-type", "x-content-sha256"], now },
    );
  } catch (e) {
    if (e instanceof Rejection) throw e;
    throw unauthenticated(e instanceof SignatureError ? e.message : `signature: ${e}`);
  }
  await checkChain(leaf, intermediates, state.root(), now);

  const who = ids as InstanceIds;
  const jti = crypto.randomUUID();
  const iat = Math.floor(now / 1000);
  const jwk = await exportJWK(sessionKey);
  const token = await new SignJWT({
    tenant: state.tenantClaim ?? who.tenancy,
    "opc-tenant": who.tenancy,
    "opc-instance": who.instanceId,
    "opc-compartment": who.compartment,
    "opc-certtype": "instance",
    ptype: "instance",
    ttype: "x509",
    jwk: { kid: jti, kty: jwk.kty, n: jwk.n, e: jwk.e, alg: "RS256", use: "sig" },
  })
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(TOKEN_ISSUER)
    .setSubject(who.instanceId)
    .setAudience("oci")
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(iat + state.tokenTtl)
    .sign(state.keys.privateKey);
  return { response: json(200, { token }), who, jti, sessionKey: body.publicKey };
}

/**
 * The request's headers with `host` filled in from the URL: over HTTP/2 the host travels as
 * `:authority`, which Deno.serve does not list among the headers, yet clients sign it.
 */
export function withHost(req: Request): Headers {
  const headers = new Headers(req.headers);
  if (!headers.has("host")) headers.set("host", new URL(req.url).host);
  return headers;
}
