/** Small shared helpers: base64, JSON answers, the rejection type, abortable sleep. */

/** Standard base64 (with padding) of bytes. */
export function encodeBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/**
 * Decodes canonical standard base64 only: no whitespace, no URL alphabet, correct padding.
 * OCI's services are strict about this; the built-in decoder alone would forgive too much.
 */
export function decodeBase64Strict(text: string): Uint8Array<ArrayBuffer> {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new Error("not canonical base64");
  }
  return Uint8Array.fromBase64(text);
}

/** Unpadded base64url of bytes (JOSE style). */
export function base64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** Base64 of the SHA-256 of bytes (the `x-content-sha256` form). */
export async function sha256Base64(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return encodeBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** A JSON response. */
export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json");
  return new Response(JSON.stringify(body), { status, headers: h });
}

/**
 * A refusal: the response to send and the reason to record in the request log. Handlers throw
 * it so that every check reads as one line.
 */
export class Rejection extends Error {
  constructor(readonly response: Response, readonly reason: string) {
    super(reason);
  }
}

/** OCI's error codes by HTTP status, as its APIs answer them. */
const OCI_CODES: Record<number, string> = {
  400: "InvalidParameter",
  401: "NotAuthenticated",
  403: "NotAuthorizedOrNotFound",
  404: "NotAuthorizedOrNotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  429: "TooManyRequests",
  500: "InternalServerError",
  502: "BadGateway",
  503: "ServiceUnavailable",
  504: "GatewayTimeout",
};

/** An OCI API error body `{"code","message"}` with its status. */
export function ociError(status: number, message: string, code?: string): Response {
  return json(status, { code: code ?? OCI_CODES[status] ?? "Error", message });
}

/** A Rejection in OCI's error format; the message sent is the reason itself. */
export function ociReject(status: number, reason: string, code?: string): Rejection {
  return new Rejection(ociError(status, reason, code), reason);
}

/** A Docker registry error body `{"errors":[{"code","message"}]}`. */
export function dockerError(
  status: number,
  code: string,
  message: string,
  headers: HeadersInit = {},
): Response {
  return json(status, { errors: [{ code, message, detail: null }] }, headers);
}

/** Resolves after ms milliseconds, or at once when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** The IMF-fixdate (RFC 7231) form of a time, e.g. "Thu, 05 Jan 2014 21:31:40 GMT". */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
