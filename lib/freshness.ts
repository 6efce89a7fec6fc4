/**
 * The freshness rule: when a cached token is answered as it is, when it is answered while a
 * refresh runs in the background, when it may no longer be used, and what kubelet is told
 * (`cacheDuration`) in each case. Every such decision of the plugin is made here.
 *
 * ## The timeline of one token of lifetime L (an hour for OCIR's docker tokens)
 *
 * ```text
 * obtained ──── fresh ──── refresh point ──── stale (usable) ──── margin ──── expiry
 *    0                     L/3 ± 10%                              L − M        L
 * ```
 *
 * - **Obtained** is our own clock when the token arrived; the token's lifetime L is its issuer's
 *   `exp − iat`, so skew between the node's clock and the issuer's never matters. An entry
 *   obtained "in the future" (the clock stepped back) or older than L (stepped forward) is not
 *   used: its age cannot be trusted.
 * - **Fresh** (before the refresh point): answered from disk; kubelet is told to keep it until
 *   the refresh point, so its next call comes right when a refresh is due.
 * - **Stale** (refresh point to L − M): answered from disk at once, and a refresh starts in a
 *   detached process; kubelet is told to keep it for {@linkcode staleCacheSeconds} (a minute for
 *   an hour-long token), long enough for the refresh to finish, short enough that kubelet soon
 *   picks up the new token, and never past L − M.
 * - **Unusable** (past L − M): the cold path, as without a cache. So is a token that
 *   `--check-pull` found cannot read the image, past its refresh point (2 minutes).
 *
 * ## Why these numbers
 *
 * - The margin M = min(5 min, L/10) is the least life a token has left when kubelet's copy of it
 *   runs out, for a pull that starts at that moment (OCI's SDKs refresh security tokens 5 minutes
 *   early too).
 * - The refresh point at a third of the life (not half) is what lets pulls survive an auth outage
 *   of half a token's life wherever it falls: an outage that begins at the latest refresh point
 *   (L/3 + 10%) and lasts L/2 ends at 0.87 L, before the token stops being usable at 0.9 L, and
 *   the retries' backoff is capped at L/30, so one retry lands in between. Refreshing earlier
 *   costs one docker token per L/3 (three an hour), nothing next to a node's pulls.
 * - The ±10% jitter spreads the refreshes of a node pool that booted together.
 * - kubelet's calls land while a usable token is on disk as long as a refresh completes within
 *   the stale window (L/3 to 0.9 L, 34 minutes of an hour-long token; a refresh takes a second).
 *
 * This module is on the warm path: it imports nothing.
 *
 * @module
 */

/** Where the refresh point sits in a token's life, before jitter. */
export const REFRESH_FRACTION = 1 / 3;
/** How far (as a fraction of the refresh point) each entry's refresh point is moved at random. */
export const REFRESH_JITTER = 0.1;

/** The times of an entry that the rule needs; epoch seconds. */
export interface Lifetime {
  /** When we obtained the token, by our clock. */
  obtainedAt: number;
  /** The token's `iat` and `exp` (or `expires_in`), by its issuer's clock. */
  issuedAt: number;
  expiresAt: number;
  /** When to refresh, by our clock ({@linkcode refreshPoint}). */
  refreshAt: number;
  /** Set when `--check-pull` found the token cannot read the image. */
  denied?: boolean;
}

/** What the rule says about an entry now. */
export type Freshness =
  | { state: "fresh"; cacheSeconds: number }
  | { state: "stale"; cacheSeconds: number }
  | { state: "unusable"; why: string };

/**
 * The safety margin M of a token living `life` seconds: min(5 min, life/10).
 *
 * @example
 * ```ts
 * margin(3600); // 300
 * margin(30); // 3
 * ```
 */
export function margin(life: number): number {
  return Math.min(300, life / 10);
}

/**
 * A new entry's refresh point: a third of its life after it was obtained, moved by up to ±10%.
 *
 * @example
 * ```ts
 * refreshPoint(1000, 3600, () => 0.5); // 2200
 * ```
 */
export function refreshPoint(
  obtainedAt: number,
  life: number,
  random: () => number = Math.random,
): number {
  const jitter = 1 + REFRESH_JITTER * (2 * random() - 1);
  return obtainedAt + life * REFRESH_FRACTION * jitter;
}

/**
 * How long kubelet may keep a stale answer: a sixtieth of the token's life, at least 2 s (a refresh
 * takes about a second, so it has mostly finished when kubelet comes back; if not, kubelet gets
 * the stale answer again and no second refresh starts) and at most a minute.
 *
 * @example
 * ```ts
 * staleCacheSeconds(3600); // 60
 * staleCacheSeconds(30); // 2
 * ```
 */
export function staleCacheSeconds(life: number): number {
  return Math.min(60, Math.max(2, life / 60));
}

/**
 * Until when (our clock) an entry may be answered at all: L − M after it was obtained.
 *
 * @example
 * ```ts
 * usableUntil({ obtainedAt: 0, issuedAt: 50, expiresAt: 3650, refreshAt: 1200 }); // 3300
 * ```
 */
export function usableUntil(entry: Lifetime): number {
  const life = entry.expiresAt - entry.issuedAt;
  return entry.obtainedAt + life - margin(life);
}

/**
 * Applies the rule to an entry at time `at` (epoch seconds, our clock).
 *
 * @example
 * ```ts
 * const entry = { obtainedAt: 0, issuedAt: 0, expiresAt: 3600, refreshAt: 1200 };
 * freshness(entry, 600); // { state: "fresh", cacheSeconds: 600 }
 * freshness(entry, 1500); // { state: "stale", cacheSeconds: 60 }
 * freshness(entry, 3400).state; // "unusable"
 * ```
 */
export function freshness(entry: Lifetime, at: number): Freshness {
  const life = entry.expiresAt - entry.issuedAt;
  if (!(life > 0)) return { state: "unusable", why: "it has no lifetime" };
  if (entry.obtainedAt > at) {
    return { state: "unusable", why: "it was obtained in the future: the clock stepped back" };
  }
  const until = usableUntil(entry);
  if (at >= until) return { state: "unusable", why: "it is too close to its expiry" };
  // A refresh point outside the token's life is a corrupt entry; the cap keeps what kubelet is
  // told within the token's own lifetime whatever the file says.
  const refreshAt = Math.min(Math.max(entry.refreshAt, entry.obtainedAt), until);
  if (at < refreshAt) return { state: "fresh", cacheSeconds: refreshAt - at };
  // A token known not to read the image is not answered past its (short) refresh point: the next
  // call gets a new token and checks it, so a newly granted policy applies within minutes.
  if (entry.denied) return { state: "unusable", why: "it could not read the image" };
  return { state: "stale", cacheSeconds: Math.min(staleCacheSeconds(life), until - at) };
}

/**
 * How long to wait before the next refresh after `failures` failed ones in a row: 1/240 of the
 * token's life doubled per failure (15 s, 30 s, … for an hour-long token), capped at L/30 so
 * that a retry lands soon after an outage ends, and never under a second.
 *
 * @example
 * ```ts
 * backoffSeconds(1, 3600); // 15
 * backoffSeconds(10, 3600); // 120
 * ```
 */
export function backoffSeconds(failures: number, life: number): number {
  const base = Math.max(1, life / 240);
  return Math.min(Math.max(1, life / 30), base * 2 ** Math.max(0, failures - 1));
}
