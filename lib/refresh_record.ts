/**
 * The bookkeeping of background refreshes, one pair of files per registry host in the cache
 * directory: the claim (`refresh-<host>.claim`), which lets exactly one of many stale calls
 * start a refresh, and the record (`refresh-<host>.json`) of the last refresh's outcome, which
 * holds the backoff after a failure and its reason for `doctor`. Starting the refresh is
 * lib/refresh.ts's job; the backoff's length is lib/freshness.ts's rule.
 *
 * This module is on the stale path: it imports nothing heavy.
 *
 * @module
 */

import { readJson, withCacheLock, writeFileAtomically } from "./cache.ts";
import { backoffSeconds } from "./freshness.ts";

const now = () => Date.now() / 1000;
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/**
 * The outcome of the last background refresh of a host's docker token, kept in
 * `refresh-<host>.json` in the cache directory for `doctor`, status reports and the backoff:
 *
 * ```json
 * {"host":"iad.ocir.io","at":1767225600,"ok":false,"failures":3,"retryAt":1767225660,
 *  "reason":"federation: auth.us-ashburn-1.oraclecloud.com answered 503 …"}
 * ```
 *
 * `at` and `retryAt` are epoch seconds; `failures` counts failed refreshes in a row (0 after a
 * success); `reason` is the failure's one-line message (never a token), absent after a success.
 */
export interface RefreshRecord {
  host: string;
  at: number;
  ok: boolean;
  failures: number;
  retryAt: number;
  reason?: string;
}

/**
 * The file of a host's refresh record.
 *
 * @example
 * ```ts
 * refreshRecordPath("/var/lib/oke-credential-provider", "iad.ocir.io");
 * // "/var/lib/oke-credential-provider/refresh-iad.ocir.io.json"
 * ```
 */
export function refreshRecordPath(dir: string, host: string): string {
  return `${dir}/${refreshRecordName(host)}`;
}

const refreshRecordName = (host: string) => `refresh-${host}.json`;

/**
 * The last background refresh of `host`, if one was recorded.
 *
 * @example
 * ```ts
 * const record = await readRefreshRecord("/var/lib/oke-credential-provider", "iad.ocir.io");
 * if (record && !record.ok) console.log(record.reason);
 * ```
 */
export async function readRefreshRecord(
  dir: string,
  host: string,
): Promise<RefreshRecord | undefined> {
  const v = await readJson(dir, refreshRecordName(host));
  if (
    !v || v.host !== host || !isTime(v.at) || typeof v.ok !== "boolean" ||
    !Number.isInteger(v.failures) || !isTime(v.retryAt) ||
    (v.reason !== undefined && typeof v.reason !== "string")
  ) return undefined;
  return v as unknown as RefreshRecord;
}

/**
 * Stores a host's refresh record. Call it holding the lock.
 *
 * @example
 * ```ts
 * const at = Date.now() / 1000;
 * await writeRefreshRecord("/var/lib/oke-credential-provider", { host: "iad.ocir.io", at, ok: true, failures: 0, retryAt: at });
 * ```
 */
export async function writeRefreshRecord(dir: string, record: RefreshRecord): Promise<void> {
  await writeFileAtomically(refreshRecordPath(dir, record.host), JSON.stringify(record));
}

const claimPath = (dir: string, host: string) => `${dir}/refresh-${host}.claim`;

/**
 * Claims the right to start a background refresh of `host`: true for exactly one of many
 * concurrent callers (the claim file is created exclusively). A claim older than `staleAfter`
 * seconds, or dated in the future, was left by a refresh that died: it is replaced.
 *
 * @example
 * ```ts
 * if (await claimRefresh("/var/lib/oke-credential-provider", "iad.ocir.io", 60)) {
 *   // start the refresh; it calls releaseRefreshClaim when done
 * }
 * ```
 */
export async function claimRefresh(
  dir: string,
  host: string,
  staleAfter: number,
): Promise<boolean> {
  const path = claimPath(dir, host);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      (await Deno.open(path, { write: true, createNew: true, mode: 0o600 })).close();
      return true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const info = await Deno.lstat(path).catch(() => undefined);
    const age = info?.mtime ? now() - info.mtime.getTime() / 1000 : 0;
    if (info && age >= 0 && age < staleAfter) return false;
    await Deno.remove(path).catch(() => {});
  }
  return false;
}

/**
 * Gives up a claim taken with {@linkcode claimRefresh}: the refresh is over.
 *
 * @example
 * ```ts
 * await releaseRefreshClaim("/var/lib/oke-credential-provider", "iad.ocir.io");
 * ```
 */
export async function releaseRefreshClaim(dir: string, host: string): Promise<void> {
  await Deno.remove(claimPath(dir, host)).catch(() => {});
}

/**
 * Records the outcome of a refresh of `host`, under the cache lock (waiting at most until
 * `signal` aborts): a success resets the count, a failure (`reason`) sets the time before the
 * next attempt from the count and the token's life.
 *
 * @example
 * ```ts
 * const dir = "/var/lib/oke-credential-provider";
 * await recordRefresh(dir, "iad.ocir.io", 3600, AbortSignal.timeout(5000), "OCIR token: HTTP 503");
 * ```
 */
export async function recordRefresh(
  dir: string,
  host: string,
  life: number,
  signal: AbortSignal,
  reason?: string,
): Promise<void> {
  await withCacheLock(dir, signal, async () => {
    const at = now();
    if (reason === undefined) {
      return await writeRefreshRecord(dir, { host, at, ok: true, failures: 0, retryAt: at });
    }
    const last = await readRefreshRecord(dir, host);
    const failures = (last && !last.ok ? last.failures : 0) + 1;
    await writeRefreshRecord(dir, {
      host,
      at,
      ok: false,
      failures,
      retryAt: at + backoffSeconds(failures, life),
      reason,
    });
  });
}
