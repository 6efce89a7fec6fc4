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
