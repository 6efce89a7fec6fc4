/**
 * The pull check: can this docker token pull this image? It walks the path a container runtime
 * walks (the registry's Bearer challenge, its token realm with `BEARER_TOKEN` basic credentials,
 * then the manifest), so a yes here means a pull will be allowed. Used by `--check-pull` and by
 * `doctor --image`; its failures carry the step "manifest check", the last request it makes.
 *
 * @module
 */

import type { Deadline } from "./deadline.ts";
import { PluginError } from "./errors.ts";
import { call, readJson } from "./http.ts";
import { type ImageReference, trustedRegistry } from "./image.ts";
import type { Logger } from "./log.ts";

/** What the registry said about reading the image. */
export interface PullCheck {
  /** True when the token may read the repository (the manifest itself may still be missing). */
  allowed: boolean;
  /** What happened, for the operator. */
  detail: string;
}

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

const RETRY_ON = [429, 500, 502, 503, 504];

/**
 * Parses a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge.
 *
 * @example
 * ```ts
 * parseChallenge('Bearer realm="https://iad.ocir.io/20180419/docker/token",service="iad.ocir.io"');
 * // { realm: "https://iad.ocir.io/20180419/docker/token", service: "iad.ocir.io" }
 * ```
 */
export function parseChallenge(header: string | null): Record<string, string> | undefined {
  const match = /^\s*bearer\s+(.*)$/i.exec(header ?? "");
  if (!match) return undefined;
  return Object.fromEntries(
    [...match[1].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1].toLowerCase(), m[2]]),
  );
}

/** How to check. */
export interface PullCheckOptions {
  deadline: Deadline;
  log: Logger;
  /** The node's realm domain, for {@linkcode trustedRegistry}. */
  realmDomain: string;
}

/**
 * Checks that `password` (a docker token for `host`) can read `image`'s manifest.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { parseImage } from "./image.ts";
 * import { createLogger } from "./log.ts";
 *
 * declare const token: string; // a docker token for iad.ocir.io
 * const check = await checkPull(parseImage("iad.ocir.io/ns/app:1"), "iad.ocir.io", token, {
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 *   realmDomain: "oraclecloud.com",
 * });
 * check.allowed; // true
 * ```
 */
export async function checkPull(
  image: ImageReference,
  host: string,
  password: string,
  options: PullCheckOptions,
): Promise<PullCheck> {
  const reference = image.digest ?? image.tag ?? "latest";
  const manifest = new URL(`https://${host}/v2/${image.repository}/manifests/${reference}`);
  const step = "manifest check" as const;
  trustedRegistry(host, options.realmDomain, step);
  const common = { step, deadline: options.deadline, log: options.log, retryOn: RETRY_ON };
  const head = (authorization?: string) =>
    call(manifest, () => ({
      method: "HEAD",
      headers: { accept: MANIFEST_TYPES, ...(authorization ? { authorization } : {}) },
    }), { ...common, accept: [401, 403, 404] });
  const verdict = (status: number, how: string): PullCheck => ({
    allowed: status < 400 || status === 404,
    detail: status === 404
      ? `${image.repository}:${reference} is readable but not found (HTTP 404 ${how})`
      : `HTTP ${status} ${how}`,
  });

  // Asked anonymously, the registry answers with the challenge naming its token realm.
  const anonymous = await head();
  if (anonymous.status !== 401) return verdict(anonymous.status, "without credentials");
  const challenge = parseChallenge(anonymous.headers.get("www-authenticate"));
  if (!challenge?.realm) {
    throw new PluginError(step, "BAD_RESPONSE", "the registry's 401 carries no Bearer challenge", {
      host,
    });
  }
  const realm = new URL(challenge.realm);
  // The docker token goes to the registry's own host, judged by trustedRegistry above, and
  // nowhere else.
  if (realm.protocol !== "https:" || realm.host !== host) {
    throw new PluginError(
      step,
      "REFUSED",
      `the registry names a token realm elsewhere (${realm.origin}): the token is not sent there`,
      { host },
    );
  }
  realm.searchParams.set("service", challenge.service ?? host);
  realm.searchParams.set("scope", `repository:${image.repository}:pull`);
  const granted = await call(realm, () => ({
    headers: { authorization: `Basic ${btoa(`BEARER_TOKEN:${password}`)}` },
  }), { ...common, accept: [401, 403] });
  if (!granted.ok) {
    await granted.body?.cancel();
    return {
      allowed: false,
      detail: `the token realm refused the docker token (HTTP ${granted.status})`,
    };
  }
  const body = await readJson(granted, step);
  const token = body.token ?? body.access_token;
  if (typeof token !== "string" || token === "") {
    throw new PluginError(step, "BAD_RESPONSE", "the token realm's answer has no token", { host });
  }
  return verdict((await head(`Bearer ${token}`)).status, "with the docker token");
}
