/**
 * OCI request signing, signature version 1 (after draft-cavage-http-signatures-08), on WebCrypto:
 * RSASSA-PKCS1-v1_5 with SHA-256 over a signing string made of the listed headers.
 *
 * @module
 */

/** A request about to be sent with `fetch`. */
export interface OutgoingRequest {
  method: string;
  url: URL;
  headers: Headers;
  body?: Uint8Array;
}

/** Who signs: the keyId OCI looks the key up by, and the private key. */
export interface Signer {
  keyId: string;
  key: CryptoKey;
}

const BODY_HEADERS = ["content-length", "content-type", "x-content-sha256"];

/**
 * The headers OCI expects signed for a method: `date (request-target) host`, plus the body
 * headers for methods that carry one.
 *
 * @example
 * ```ts
 * headersToSign("GET"); // ["date", "(request-target)", "host"]
 * ```
 */
export function headersToSign(method: string): string[] {
  const base = ["date", "(request-target)", "host"];
  return ["POST", "PUT", "PATCH"].includes(method.toUpperCase())
    ? [...base, ...BODY_HEADERS]
    : base;
}

/**
 * The signing string: `name: value` per header, joined by `\n`, no trailing newline.
 *
 * @example
 * ```ts
 * signingString({ method: "GET", url: new URL("https://h/p?q=1"), headers: new Headers({ date: "D" }) },
 *   ["date", "(request-target)", "host"]); // "date: D\n(request-target): get /p?q=1\nhost: h"
 * ```
 */
export function signingString(request: OutgoingRequest, names: string[]): string {
  return names.map((name) => {
    if (name === "(request-target)") {
      return `${name}: ${request.method.toLowerCase()} ${request.url.pathname}${request.url.search}`;
    }
    const value = name === "host"
      ? request.headers.get("host") ?? request.url.host
      : request.headers.get(name);
    if (value === null) throw new Error(`header ${name} is to be signed but is not set`);
    return `${name}: ${value}`;
  }).join("\n");
}

/**
 * Signs a request in place: sets `date` (unless set), the body headers for a body, and
 * `authorization`. `names` overrides the signed-header list (the federation call leaves `host` out).
 *
 * @example
 * ```ts
 * declare const token: string; // a security token
 * declare const sessionKey: CryptoKeyPair; // the session key it is bound to
 * const url = new URL("https://iad.ocir.io/20180419/docker/token");
 * const request = { method: "GET", url, headers: new Headers() };
 * await signRequest(request, { keyId: `ST$${token}`, key: sessionKey.privateKey });
 * await fetch(request.url, request);
 * ```
 */
export async function signRequest(
  request: OutgoingRequest,
  signer: Signer,
  names: string[] = headersToSign(request.method),
): Promise<void> {
  const { headers, body } = request;
  if (!headers.has("date")) headers.set("date", new Date().toUTCString());
  if (names.includes("x-content-sha256")) {
    const bytes = body ?? new Uint8Array();
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
    );
    headers.set("x-content-sha256", digest.toBase64());
    headers.set("content-length", String(bytes.length));
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  const text = new TextEncoder().encode(signingString(request, names));
  const signature = new Uint8Array(await crypto.subtle.sign("RSASSA-PKCS1-v1_5", signer.key, text));
  headers.set(
    "authorization",
    `Signature version="1",keyId="${signer.keyId}",algorithm="rsa-sha256",headers="${
      names.join(" ")
    }",signature="${signature.toBase64()}"`,
  );
}

/**
 * A signed POST of `body` to `url`, made anew each time it is called, so that every retry of it
 * carries a fresh date. `names` as in {@linkcode signRequest}.
 *
 * @example
 * ```ts
 * declare const signer: Signer;
 * const url = new URL("https://auth.us-ashburn-1.oraclecloud.com/v1/x509");
 * const post = signedPost(url, "application/json", new TextEncoder().encode("{}"), signer);
 * await fetch(url, await post());
 * ```
 */
export function signedPost(
  url: URL,
  contentType: string,
  body: Uint8Array,
  signer: Signer,
  names?: string[],
): () => Promise<RequestInit> {
  return async () => {
    const request = {
      method: "POST",
      url,
      headers: new Headers({ "content-type": contentType }),
      body,
    };
    await signRequest(request, signer, names);
    return { method: "POST", headers: request.headers, body: body as Uint8Array<ArrayBuffer> };
  };
}
