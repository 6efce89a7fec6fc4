/**
 * Federation: the instance certificate, signed for with the instance key, buys a security token
 * bound to a fresh session key (OCI "instance principals").
 *
 * @module
 */

import type { Deadline } from "./deadline.ts";
import { PluginError } from "./errors.ts";
import { call, readToken } from "./http.ts";
import type { InstanceIdentity } from "./identity.ts";
import type { Logger } from "./log.ts";
import type { Region } from "./regions.ts";
import { signedPost } from "./signer.ts";
import type { IssuedToken } from "./token.ts";

/**
 * A fresh RSA-2048 session key pair (e = 65537), extractable so the cache can keep it.
 *
 * @example
 * ```ts
 * const { publicKey, privateKey } = await generateSessionKey();
 * ```
 */
export async function generateSessionKey(): Promise<CryptoKeyPair> {
  const started = performance.now();
  const keys = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  performance.measure("session key", { start: started }); // read by deno task bench
  return keys;
}

/**
 * The auth service's federation URL for a region, or the override (`OCI_SDK_AUTH_CLIENT_REGION_URL`,
 * a base URL as in OCI's Go SDK).
 *
 * @example
 * ```ts
 * import { findRegion } from "./regions.ts";
 *
 * federationUrl(findRegion("us-ashburn-1")!).href;
 * // "https://auth.us-ashburn-1.oraclecloud.com/v1/x509"
 * ```
 */
export function federationUrl(region: Region, override?: string): URL {
  const base = override?.trim()
    ? override.trim().replace(/\/+$/, "")
    : `https://auth.${region.regionId}.${region.realmDomain}`;
  return new URL(base.endsWith("/v1/x509") ? base : `${base}/v1/x509`);
}

/**
 * Decodes (never verifies: the plugin is not the audience) a security token's claims and
 * checks it is a JWT that has not expired.
 *
 * @example
 * ```ts
 * declare const token: string; // from the auth service
 * decodeSecurityToken(token, "auth.us-ashburn-1.oraclecloud.com").claims.sub; // "ocid1.instance…"
 * ```
 */
export function decodeSecurityToken(token: string, host: string, now = Date.now() / 1000): {
  claims: Record<string, unknown>;
  issuedAt: number;
  expiresAt: number;
} {
  const bad = (why: string) =>
    new PluginError("federation", "BAD_RESPONSE", `security token ${why}`, { host });
  const parts = token.split(".");
  if (parts.length !== 3) throw bad("is not a JWT");
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(
      new TextDecoder().decode(Uint8Array.fromBase64(parts[1], { alphabet: "base64url" })),
    );
  } catch {
    throw bad("has an unreadable payload");
  }
  const { exp, iat } = claims ?? {};
  if (typeof exp !== "number" || !Number.isFinite(exp)) throw bad("has no expiry (exp)");
  if (exp <= now) throw bad(`expired at ${new Date(exp * 1000).toISOString()}`);
  return { claims, expiresAt: exp, issuedAt: typeof iat === "number" ? iat : Math.floor(now) };
}

/** What the auth service's error statuses most likely mean, for the operator. */
const FEDERATION_HINTS: Record<number, string> = {
  400: "the auth service found the request malformed; report it with the plugin's version",
  401:
    "the auth service rejected the instance certificate's signature: most often the node's clock is off by more than 5 minutes, else the certificate from IMDS is stale or the tenancy does not match",
};

/** Where and how to federate. */
export interface FederationOptions {
  url: URL;
  deadline: Deadline;
  log: Logger;
}

/**
 * Exchanges the instance identity for a security token bound to `sessionKey`.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import type { InstanceIdentity } from "./identity.ts";
 * import { createLogger } from "./log.ts";
 *
 * declare const identity: InstanceIdentity; // from instanceIdentity()
 * const url = federationUrl(identity.region);
 * const log = createLogger("warn");
 * const st = await federate(identity, await generateSessionKey(), { url, deadline: deadline(45), log });
 * ```
 */
export async function federate(
  identity: InstanceIdentity,
  sessionKey: CryptoKeyPair,
  options: FederationOptions,
): Promise<IssuedToken> {
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", sessionKey.publicKey));
  const body = new TextEncoder().encode(JSON.stringify({
    certificate: identity.leaf.der.toBase64(),
    publicKey: publicKey.toBase64(),
    intermediateCertificates: [identity.intermediate.der.toBase64()],
    fingerprintAlgorithm: "SHA256",
  }));
  const keyId = `${identity.tenancy}/fed-x509-sha256/${identity.fingerprint}`;
  const host = options.url.host;
  // As OCI's Go and Python SDKs sign it: no `host`.
  const signed = ["date", "(request-target)", "content-length", "content-type", "x-content-sha256"];
  const post = signedPost(options.url, "application/json", body, {
    keyId,
    key: identity.privateKey,
  }, signed);
  const response = await call(options.url, post, {
    step: "federation",
    deadline: options.deadline,
    log: options.log,
    retryOn: [429, 500, 502, 503, 504],
    hint: (status) => FEDERATION_HINTS[status],
  });
  const token = await readToken(response, "federation");
  const { claims, issuedAt, expiresAt } = decodeSecurityToken(token, host);
  // No OCI SDK checks the token's tenancy against the certificate's, and the auth service is the
  // authority on it: a difference is worth a note for debugging, not a failed pull.
  const tenant = claims.tenant ?? claims["opc-tenant"];
  if (tenant !== undefined && tenant !== identity.tenancy) {
    options.log.debug(
      "federation",
      `the security token names tenancy ${
        String(tenant).slice(0, 120)
      }, the instance certificate ${identity.tenancy}`,
      host,
    );
  }
  return { token, issuedAt, expiresAt };
}
