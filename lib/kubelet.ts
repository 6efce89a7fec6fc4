/**
 * Kubelet's side of the exec-plugin contract (CredentialProvider API, KEP-2133): read one
 * `CredentialProviderRequest`, write one `CredentialProviderResponse` in the same apiVersion.
 * Kubelet decodes the response strictly, so it carries exactly the fields below.
 *
 * @module
 */

import { PluginError } from "./errors.ts";

/** The request versions kubelet may send; we answer in the one we were asked in. */
export const API_VERSIONS = [
  "credentialprovider.kubelet.k8s.io/v1",
  "credentialprovider.kubelet.k8s.io/v1beta1",
  "credentialprovider.kubelet.k8s.io/v1alpha1",
] as const;
/** One of {@linkcode API_VERSIONS}. */
export type ApiVersion = typeof API_VERSIONS[number];

/** The fields of a request the plugin uses. */
export interface CredentialProviderRequest {
  apiVersion: ApiVersion;
  image: string;
}

/** Kubelet's requests are a few hundred bytes; anything near this is not kubelet talking. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

const bad = (reason: string) => new PluginError("request", "BAD_INPUT", reason);

/** A field's value quoted in an error: cut short, since a field may hold up to a megabyte. */
const quote = (value: unknown) => {
  const text = JSON.stringify(value) ?? "missing";
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
};

/**
 * Reads the whole request from a stream, refusing more than {@linkcode MAX_REQUEST_BYTES}.
 *
 * @example
 * ```ts
 * const text = await readRequest(Deno.stdin.readable);
 * ```
 */
export async function readRequest(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.byteLength;
    if (size > MAX_REQUEST_BYTES) {
      throw bad(`stdin is larger than ${MAX_REQUEST_BYTES} bytes: not a CredentialProviderRequest`);
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) bytes.set(chunk, (at += chunk.byteLength) - chunk.byteLength);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw bad("stdin is not UTF-8 text");
  }
}

/**
 * Parses and checks a request. Extra fields (service-account token and annotations, KEP-4412)
 * are allowed and ignored.
 *
 * @example
 * ```ts
 * parseRequest('{"apiVersion":"credentialprovider.kubelet.k8s.io/v1",' +
 *   '"kind":"CredentialProviderRequest","image":"iad.ocir.io/ns/app:1"}').image; // "iad.ocir.io/ns/app:1"
 * ```
 */
export function parseRequest(text: string): CredentialProviderRequest {
  if (text.trim() === "") throw bad("stdin is empty: expected a CredentialProviderRequest (JSON)");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad("stdin is not JSON"); // no parser detail: it would quote the input, which may hold a token
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("stdin is not a JSON object");
  }
  const { apiVersion, kind, image } = value as Record<string, unknown>;
  if (kind !== "CredentialProviderRequest") {
    throw bad(`kind is ${quote(kind)}, expected "CredentialProviderRequest"`);
  }
  if (!API_VERSIONS.includes(apiVersion as ApiVersion)) {
    throw bad(
      `apiVersion ${quote(apiVersion)} is not one of ${API_VERSIONS.join(", ")}`,
    );
  }
  if (typeof image !== "string" || image === "") throw bad("the request names no image");
  return { apiVersion: apiVersion as ApiVersion, image };
}

/** The credentials for one registry host. */
export interface RegistryAuth {
  host: string;
  password: string;
}

/**
 * Builds the response JSON. `auth` null means "no credentials from us" (an image we do not serve).
 *
 * @example
 * ```ts
 * formatResponse("credentialprovider.kubelet.k8s.io/v1", { host: "iad.ocir.io", password: "t" }, 3300);
 * // {"apiVersion":"…/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry",
 * //  "cacheDuration":"55m0s","auth":{"iad.ocir.io":{"username":"BEARER_TOKEN","password":"t"}}}
 * ```
 */
export function formatResponse(
  apiVersion: ApiVersion,
  auth: RegistryAuth | null,
  cacheSeconds: number,
): string {
  return JSON.stringify({
    apiVersion,
    kind: "CredentialProviderResponse",
    cacheKeyType: "Registry",
    cacheDuration: goDuration(cacheSeconds),
    auth: auth ? { [auth.host]: { username: "BEARER_TOKEN", password: auth.password } } : {},
  });
}

/**
 * Formats whole seconds the way Go's `time.Duration.String` does, which is what kubelet parses.
 *
 * @example
 * ```ts
 * goDuration(3300); // "55m0s"
 * goDuration(3723); // "1h2m3s"
 * goDuration(0); // "0s"
 * ```
 */
export function goDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  if (h > 0) return `${h}h${m}m${rest}s`;
  if (m > 0) return `${m}m${rest}s`;
  return `${rest}s`;
}
