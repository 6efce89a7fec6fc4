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
  /**
   * The pod's service-account token (KEP-4412, kubelet ≥ 1.34 with `tokenAttributes`). A secret:
   * never logged, never written anywhere.
   */
  serviceAccountToken?: string;
  /** The service account's annotations that kubelet was told to pass. */
  serviceAccountAnnotations?: Record<string, string>;
}

/** The service-account annotation by which a workload opts in to its own pull identity. */
export const PULL_IDENTITY_ANNOTATION = "oke-credential-provider.io/pull-identity";

/**
 * Whose identity pulls for a request: `node` (instance principal), `workload` (the pod's service
 * account: only with a token and the annotation set to exactly `workload`) or `none` (a
 * service account that did not opt in, under `--node-identity deny`). No token is always `node`:
 * that is every call kubelet makes without `tokenAttributes`.
 *
 * @example
 * ```ts
 * pullIdentity({ apiVersion: API_VERSIONS[0], image: "iad.ocir.io/ns/a:1" }, "deny"); // "node"
 * ```
 */
export function pullIdentity(
  request: CredentialProviderRequest,
  nodeIdentity: "allow" | "deny",
): "node" | "workload" | "none" {
  if (!request.serviceAccountToken) return "node";
  if (request.serviceAccountAnnotations?.[PULL_IDENTITY_ANNOTATION] === "workload") {
    return "workload";
  }
  return nodeIdentity === "allow" ? "node" : "none";
}

/** Kubelet's requests are a few hundred bytes; anything near this is not kubelet talking. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

const bad = (reason: string) => new PluginError("request", "BAD_INPUT", reason);

/** A field's value quoted in an error: cut short, since a field may hold up to a megabyte. */
const quote = (value: unknown) => {
  const text = JSON.stringify(value) ?? "missing";
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
};

/** Where the request comes from: `Deno.stdin`, or anything that reads like it. */
export interface RequestSource {
  read(buffer: Uint8Array): Promise<number | null>;
}

/** The value of `bytes` when they are already one whole JSON text, else undefined. */
function wholeJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
}

/**
 * Reads and checks the request, refusing more than {@linkcode MAX_REQUEST_BYTES}. Kubelet writes
 * the request in one go, so reading stops as soon as what came is a whole JSON text: the usual
 * case waits for no end of stdin. A stdin that never sends is the caller's deadline's to end.
 *
 * @example
 * ```ts
 * const request = await readRequest(Deno.stdin);
 * ```
 */
export async function readRequest(source: RequestSource): Promise<CredentialProviderRequest> {
  const buffer = new Uint8Array(64 * 1024);
  let bytes = new Uint8Array(0);
  for (;;) {
    const n = await source.read(buffer);
    if (n === null) break;
    if (bytes.length + n > MAX_REQUEST_BYTES) {
      throw bad(`stdin is larger than ${MAX_REQUEST_BYTES} bytes: not a CredentialProviderRequest`);
    }
    const joined = new Uint8Array(bytes.length + n);
    joined.set(bytes);
    joined.set(buffer.subarray(0, n), bytes.length);
    bytes = joined;
    const value = wholeJson(bytes);
    if (value !== undefined) return checkRequest(value);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw bad("stdin is not UTF-8 text");
  }
  return parseRequest(text);
}

/**
 * Parses and checks a request, with the service-account token and annotations of KEP-4412 when
 * kubelet sends them. Other extra fields are ignored.
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
  return checkRequest(value);
}

/** Checks a parsed request's fields. */
function checkRequest(value: unknown): CredentialProviderRequest {
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
  const request: CredentialProviderRequest = { apiVersion: apiVersion as ApiVersion, image };
  const { serviceAccountToken: token, serviceAccountAnnotations: annotations } = value as Record<
    string,
    unknown
  >;
  // The token's value is never quoted in an error: it is a credential.
  if (token !== undefined && token !== null && token !== "") {
    if (typeof token !== "string") throw bad("serviceAccountToken is not a string");
    request.serviceAccountToken = token;
  }
  if (annotations !== undefined && annotations !== null) {
    if (
      typeof annotations !== "object" || Array.isArray(annotations) ||
      !Object.values(annotations).every((v) => typeof v === "string")
    ) {
      throw bad("serviceAccountAnnotations is not a map of strings");
    }
    request.serviceAccountAnnotations = annotations as Record<string, string>;
  }
  return request;
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
