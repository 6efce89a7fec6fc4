/**
 * Backend `oke`: OKE Workload Identity's "proxymux" exchange (WORKLOAD-IDENTITY.md §3). The pod's
 * service-account token, sent only to a server the cluster CA vouches for, buys a workload
 * session token bound to a fresh session key; it then signs OCIR calls like the node's own.
 *
 * @module
 */

import { pinnedPost } from "./cluster_tls.ts";
import { describe, PluginError } from "./errors.ts";
import { generateSessionKey } from "./federation.ts";
import type { Deadline } from "./deadline.ts";
import type { Logger } from "./log.ts";

/** A session token and the private key it is bound to. */
export interface WorkloadSession {
  token: string;
  privateKey: CryptoKey;
}

/** Where proxymux is and what to trust. */
export interface ProxymuxOptions {
  /** The full endpoint, path included. */
  url: URL;
  /** The cluster CA file: the only trust for proxymux. */
  clusterCa: string;
  deadline: Deadline;
  log: Logger;
}

const STEP = "workload identity";

/** SPKI DER as PEM, lines of 64. */
function publicKeyPem(spki: Uint8Array): string {
  const lines = spki.toBase64().match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN PUBLIC KEY-----\n${lines}\n-----END PUBLIC KEY-----\n`;
}

/**
 * Decodes proxymux's answer: a JSON string literal holding base64 of `{"token":"ST$<jwt>"}`.
 *
 * @example
 * ```ts
 * decodeProxymuxAnswer(JSON.stringify(btoa('{"token":"ST$abc"}')), "10.0.0.2:12250"); // "abc"
 * ```
 */
export function decodeProxymuxAnswer(body: string, host: string): string {
  try {
    const literal = JSON.parse(body);
    const inner = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(literal)));
    if (
      typeof inner.token === "string" && inner.token.startsWith("ST$") && inner.token.length > 3
    ) {
      return inner.token.slice(3);
    }
  } catch {
    // reported below
  }
  throw new PluginError(
    STEP,
    "BAD_RESPONSE",
    'proxymux\'s answer is not the base64 {"token":"ST$…"} string OKE sends',
    { host },
  );
}

async function readClusterCa(file: string): Promise<string> {
  try {
    const pem = await Deno.readTextFile(file);
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in it");
    return pem.slice(pem.indexOf("-----BEGIN CERTIFICATE-----"));
  } catch (e) {
    throw new PluginError(STEP, "BAD_INPUT", `cannot read the cluster CA ${file}: ${describe(e)}`, {
      hint: "set --cluster-ca to the cluster CA kubelet trusts (on OKE /etc/kubernetes/ca.crt)",
    });
  }
}

/**
 * Exchanges a service-account token at proxymux for a workload session token.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 *
 * declare const serviceAccountToken: string; // from kubelet's request
 * const session = await proxymuxSession(serviceAccountToken, {
 *   url: new URL("https://10.0.0.2:12250/resourcePrincipalSessionTokens"),
 *   clusterCa: "/etc/kubernetes/ca.crt",
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * ```
 */
export async function proxymuxSession(
  serviceAccountToken: string,
  options: ProxymuxOptions,
): Promise<WorkloadSession> {
  const { url, deadline, log } = options;
  const host = url.host;
  const caPem = await readClusterCa(options.clusterCa);
  const keys = await generateSessionKey();
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const body = JSON.stringify({ podKey: publicKeyPem(spki) });
  let answer;
  for (let attempt = 1;; attempt++) {
    try {
      answer = await pinnedPost(url, {
        caPem,
        caSource: options.clusterCa,
        headers: {
          authorization: `Bearer ${serviceAccountToken}`,
          "content-type": "application/json",
          "opc-request-id": crypto.randomUUID().replaceAll("-", "").toUpperCase(),
        },
        body,
        step: STEP,
        deadline,
      });
    } catch (e) {
      // A refused certificate or the deadline is final; a connection failure gets a second try.
      if (!(e instanceof PluginError) || e.code !== "NETWORK" || attempt >= 3) throw e;
      log.info(STEP, `${e.reason}; retrying`, host);
      continue;
    }
    if (answer.status < 500 && answer.status !== 429 || attempt >= 3) break;
    log.info(STEP, `proxymux answered HTTP ${answer.status}; retrying`, host);
  }
  if (answer.status !== 200) {
    const hint = answer.status === 401
      ? "proxymux refused the service-account token: its audience (tokenAttributes.serviceAccountTokenAudience) may not be one proxymux accepts, or the token expired"
      : answer.status === 403
      ? "this is not an enhanced cluster: OKE Workload Identity needs one; use --workload-identity federation instead"
      : undefined;
    throw new PluginError(STEP, "HTTP_STATUS", `proxymux answered HTTP ${answer.status}`, {
      host,
      status: answer.status,
      hint,
    });
  }
  return { token: decodeProxymuxAnswer(answer.body, host), privateKey: keys.privateKey };
}
