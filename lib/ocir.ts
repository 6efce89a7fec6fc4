/**
 * OCIR's docker token (Container Registry API 20180419, GetAccessToken): a signed GET with the
 * security token to the image's own registry host, answered with a short-lived token that docker
 * clients send as the password of the user `BEARER_TOKEN`.
 *
 * @module
 */

import type { Deadline } from "./deadline.ts";
import { PluginError } from "./errors.ts";
import { call, readJson } from "./http.ts";
import type { Logger } from "./log.ts";
import { signRequest } from "./signer.ts";
import { type IssuedToken, jwtClaims } from "./token.ts";

/** What a token request needs. */
export interface DockerTokenOptions {
  /** The security token, sent as `keyId="ST$<token>"`. */
  securityToken: string;
  /** The session private key the security token is bound to. */
  sessionKey: CryptoKey;
  deadline: Deadline;
  log: Logger;
}

// OCIR tokens live an hour; a day is far beyond anything OCIR issues, so more is a broken answer.
const MAX_LIFETIME_SECONDS = 24 * 3600;

/** The lifetime Distribution's token spec gives a token whose answer has no `expires_in`. */
export const DEFAULT_LIFETIME_SECONDS = 60;

/** A JWT's `exp`, or undefined when the token is not a JWT with one (tokens may be opaque). */
function jwtExpiry(token: string): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
}

/**
 * The policy statement that lets the instance read repositories, for error messages and `doctor`.
 *
 * @example
 * ```ts
 * policyHint("ocid1.compartment.oc1..x");
 * ```
 */
export function policyHint(compartment = "<compartment ocid>"): string {
  return `the instance may not read this registry: add it to a dynamic group (e.g. All {instance.compartment.id = '${compartment}'}) and allow it: "Allow dynamic-group <group> to read repos in tenancy"`;
}

/**
 * Asks `host` for a docker token.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 *
 * declare const securityToken: string; // from federate()
 * declare const sessionKey: CryptoKey; // the private key it is bound to
 * const { token, expiresAt } = await fetchDockerToken("iad.ocir.io", {
 *   securityToken,
 *   sessionKey,
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * ```
 */
export async function fetchDockerToken(
  host: string,
  options: DockerTokenOptions,
): Promise<IssuedToken> {
  const url = new URL(`https://${host}/20180419/docker/token`);
  const response = await call(url, async () => {
    const request = { method: "GET", url, headers: new Headers() };
    await signRequest(request, { keyId: `ST$${options.securityToken}`, key: options.sessionKey });
    return { headers: request.headers };
  }, {
    step: "OCIR token",
    deadline: options.deadline,
    log: options.log,
    retryOn: [429, 500, 502, 503, 504],
    // A 401 is also OCIR's answer to a request date more than 5 minutes off its clock; when the
    // security token came from the cache, federation has not already caught a wrong node clock.
    hint: (status) =>
      status === 403
        ? policyHint()
        : status === 401
        ? `${policyHint()}; or, if the message is about the date, the node's clock is more than 5 minutes off (check chrony)`
        : undefined,
  });
  const now = Math.floor(Date.now() / 1000);
  const body = await readJson(response, "OCIR token");
  const token = body.token ?? body.access_token;
  const bad = (why: string) => new PluginError("OCIR token", "BAD_RESPONSE", why, { host });
  if (typeof token !== "string" || token === "") throw bad("the answer has no token");
  // `expires_in` is optional in Distribution's token spec: when absent (or null), the token's own
  // `exp`, else the spec's default.
  const given = body.expires_in ?? undefined;
  const exp = given === undefined ? jwtExpiry(token) : undefined;
  const lifetime = given ?? (exp === undefined ? DEFAULT_LIFETIME_SECONDS : Math.floor(exp) - now);
  if (
    typeof lifetime !== "number" || !Number.isInteger(lifetime) || lifetime <= 0 ||
    lifetime > MAX_LIFETIME_SECONDS
  ) {
    const what = exp === undefined
      ? `expires_in (${JSON.stringify(lifetime)})`
      : `token's exp (${lifetime} s from now)`;
    throw bad(
      `the answer's ${what} is not a lifetime in seconds between 1 and ${MAX_LIFETIME_SECONDS}`,
    );
  }
  return { token, issuedAt: now, expiresAt: now + lifetime };
}
