/**
 * The one shape of a token an OCI service issues us: the security token from federation
 * (lib/federation.ts) and the docker token from OCIR (lib/ocir.ts) are both a text and a
 * lifetime, and the cache (lib/cache.ts) decides from that lifetime when to stop reusing them.
 *
 * @module
 */

/** A token and its lifetime. */
export interface IssuedToken {
  /** The token itself: a secret, never logged. */
  token: string;
  /** Epoch seconds. */
  issuedAt: number;
  /** Epoch seconds. */
  expiresAt: number;
}

/**
 * The claims of a JWT, decoded (never verified: the plugin is never a token's audience), or
 * undefined when `token` is not a JWT with a JSON object as its payload. Tokens may be opaque:
 * callers treat undefined as "nothing known".
 *
 * @example
 * ```ts
 * jwtClaims("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.")?.exp; // 1
 * jwtClaims("opaque"); // undefined
 * ```
 */
export function jwtClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.fromBase64(parts[1], { alphabet: "base64url" }),
      ),
    );
    return typeof claims === "object" && claims !== null && !Array.isArray(claims)
      ? claims
      : undefined;
  } catch {
    return undefined;
  }
}
