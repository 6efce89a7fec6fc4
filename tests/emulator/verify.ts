/**
 * Verification of OCI request signatures (version 1, after draft-cavage-http-signatures-08),
 * written from the protocol description alone: the emulator is the independent judge of the
 * plugin's signer, so nothing here comes from lib/.
 */
import { sha256Base64 } from "./util.ts";

/** The parameters of an `Authorization: Signature …` header. */
export interface SignatureParams {
  version: string;
  keyId: string;
  algorithm: string;
  /** Signed header names, lower case, in signing order. */
  headers: string[];
  signature: Uint8Array;
}

/** A verification failure; the message says which rule broke. */
export class SignatureError extends Error {}

const MAX_SKEW_MS = 5 * 60_000;
const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** Parses the Authorization header; throws SignatureError when it is not a usable signature. */
export function parseSignatureHeader(value: string | null): SignatureParams {
  if (!value) throw new SignatureError("no Authorization header");
  const m = /^Signature\s+(.*)$/i.exec(value.trim());
  if (!m) throw new SignatureError("Authorization scheme is not Signature");
  const params = new Map<string, string>();
  // Parameters are `name="value"` separated by commas; values never contain quotes.
  const rest = m[1].replace(
    /\s*([A-Za-z]+)="([^"]*)"\s*(,|$)/g,
    (_all, name: string, v: string) => {
      if (params.has(name)) throw new SignatureError(`duplicate signature parameter ${name}`);
      params.set(name, v);
      return "";
    },
  );
  if (rest.trim() !== "") throw new SignatureError("malformed Signature parameters");
  const get = (name: string) => {
    const v = params.get(name);
    if (v === undefined) throw new SignatureError(`signature parameter ${name} missing`);
    return v;
  };
  const version = get("version");
  if (version !== "1") throw new SignatureError(`unsupported signature version "${version}"`);
  const algorithm = get("algorithm");
  if (algorithm !== "rsa-sha256") {
    throw new SignatureError(`unsupported signature algorithm "${algorithm}"`);
  }
  const headers = get("headers").split(" ").filter((h) => h !== "");
  if (headers.some((h) => h !== h.toLowerCase())) {
    throw new SignatureError("signed header names must be lower case");
  }
  if (new Set(headers).size !== headers.length) {
    throw new SignatureError("a header is listed twice in headers");
  }
  let signature: Uint8Array;
  try {
    signature = Uint8Array.fromBase64(get("signature"));
  } catch {
    throw new SignatureError("signature is not base64");
  }
  return { version, keyId: get("keyId"), algorithm, headers, signature };
}

/** The parts of a request that a signature covers. */
export interface SignedRequest {
  method: string;
  /** Path and query exactly as sent, e.g. "/20180419/docker/token?service=iad.ocir.io". */
  target: string;
  headers: Headers;
  /** The body bytes, for requests that have one. */
  body?: Uint8Array<ArrayBuffer>;
}

/** The signing string: one `name: value` line per signed header, no trailing newline. */
export function signingString(req: SignedRequest, names: string[]): string {
  return names.map((name) => {
    if (name === "(request-target)") return `${name}: ${req.method.toLowerCase()} ${req.target}`;
    const value = req.headers.get(name);
    if (value === null) throw new SignatureError(`signed header ${name} is not in the request`);
    return `${name}: ${value}`;
  }).join("\n");
}

/** What a service demands of a signature beyond its validity. */
export interface SignatureRules {
  /** Headers that must be signed (besides `(request-target)` and `date`/`x-date`). */
  required: string[];
  /** The service's clock, ms since the epoch. */
  now: number;
}

/**
 * Checks a signed request: the signed-header set, body hash and length, date skew, and the
 * RSA-SHA256 signature under publicKey. Throws SignatureError naming the first broken rule.
 */
export async function verifySignature(
  req: SignedRequest,
  params: SignatureParams,
  publicKey: CryptoKey,
  rules: SignatureRules,
): Promise<void> {
  const signed = new Set(params.headers);
  for (const name of ["(request-target)", ...rules.required]) {
    if (!signed.has(name)) throw new SignatureError(`signed headers lack ${name}`);
  }
  const dateHeaders = ["date", "x-date"].filter((h) => signed.has(h));
  if (dateHeaders.length === 0) throw new SignatureError("signed headers lack date or x-date");
  for (const name of dateHeaders) {
    const value = req.headers.get(name);
    if (value === null) throw new SignatureError(`signed header ${name} is not in the request`);
    if (!IMF_FIXDATE.test(value)) throw new SignatureError(`${name} is not an RFC 7231 date`);
    const skew = Date.parse(value) - rules.now;
    if (Math.abs(skew) > MAX_SKEW_MS) {
      throw new SignatureError(
        `${name} is ${Math.round(skew / 1000)} s off the service clock (limit 300 s)`,
      );
    }
  }
  if (signed.has("x-content-sha256")) {
    const expected = await sha256Base64(req.body ?? new Uint8Array());
    if (req.headers.get("x-content-sha256") !== expected) {
      throw new SignatureError("x-content-sha256 does not match the body");
    }
  }
  if (signed.has("content-length")) {
    if (req.headers.get("content-length") !== String(req.body?.length ?? 0)) {
      throw new SignatureError("content-length does not match the body");
    }
  }
  const text = new TextEncoder().encode(signingString(req, params.headers));
  const ok = await crypto.subtle.verify(
    "RSASSA-PKCS1-v1_5",
    publicKey,
    params.signature as Uint8Array<ArrayBuffer>,
    text,
  );
  if (!ok) throw new SignatureError("signature does not verify");
}

/** Imports an RSA public key (SubjectPublicKeyInfo DER) for RSASSA-PKCS1-v1_5/SHA-256. */
export function importRsaSpki(spki: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "spki",
    spki as Uint8Array<ArrayBuffer>,
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    true,
    ["verify"],
  );
}
