/**
 * Backend `federation`: IAM Workload Identity Federation (WORKLOAD-IDENTITY.md §4). The node,
 * authenticated by its own instance-principal signature (no client secret on the node), trades
 * the pod's service-account token at an identity domain for a UPST or RPST bound to a fresh
 * session key.
 *
 * @module
 */

import { generateSessionKey } from "./federation.ts";
import type { Deadline } from "./deadline.ts";
import { call, readToken } from "./http.ts";
import type { Logger } from "./log.ts";
import type { WorkloadSession } from "./proxymux.ts";
import { signedPost } from "./signer.ts";

/** What the exchange needs. */
export interface TokenExchangeOptions {
  /** The identity domain's base URL; `/oauth2/v1/token` is appended. */
  identityDomainUrl: string;
  tokenType: "upst" | "rpst";
  /** The node's instance-principal session, which signs the request. */
  node: WorkloadSession;
  deadline: Deadline;
  log: Logger;
}

/**
 * The token endpoint of an identity domain.
 *
 * @example
 * ```ts
 * tokenEndpoint("https://idcs-1.identity.oraclecloud.com/").href;
 * // "https://idcs-1.identity.oraclecloud.com/oauth2/v1/token"
 * ```
 */
export function tokenEndpoint(base: string): URL {
  return new URL(`${base.replace(/\/+$/, "")}/oauth2/v1/token`);
}

/** What the identity domain's error statuses most likely mean, for the operator. */
const EXCHANGE_HINTS: Record<number, string> = {
  400:
    "the identity domain refused the service-account token: is there an Identity Propagation Trust for this cluster's issuer (with its JWKS), and is the token's audience one it accepts?",
  401:
    "the identity domain did not accept the node's signature: a policy must let the workers' dynamic group exchange tokens in this domain",
};

/**
 * Exchanges a service-account token for an OCI session token at the identity domain.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import type { WorkloadSession } from "./proxymux.ts";
 *
 * declare const serviceAccountToken: string; // from kubelet's request
 * declare const node: WorkloadSession; // the node's instance-principal session
 * const session = await exchangeAtIdentityDomain(serviceAccountToken, {
 *   identityDomainUrl: "https://idcs-1.identity.oraclecloud.com",
 *   tokenType: "upst",
 *   node,
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * ```
 */
export async function exchangeAtIdentityDomain(
  serviceAccountToken: string,
  options: TokenExchangeOptions,
): Promise<WorkloadSession> {
  const url = tokenEndpoint(options.identityDomainUrl);
  const keys = await generateSessionKey();
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const form = new URLSearchParams({
    grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
    requested_token_type: `urn:oci:token-type:oci-${options.tokenType}`,
    subject_token: serviceAccountToken,
    subject_token_type: "jwt",
    public_key: spki.toBase64(),
    ...(options.tokenType === "rpst" ? { res_type: "k8sworkload" } : {}),
  });
  const body = new TextEncoder().encode(form.toString());
  const post = signedPost(url, "application/x-www-form-urlencoded", body, {
    keyId: `ST$${options.node.token}`,
    key: options.node.privateKey,
  });
  const response = await call(url, post, {
    step: "workload identity",
    deadline: options.deadline,
    log: options.log,
    retryOn: [429, 500, 502, 503, 504],
    hint: (status) => EXCHANGE_HINTS[status],
  });
  const token = await readToken(response, "workload identity");
  return { token, privateKey: keys.privateKey };
}
