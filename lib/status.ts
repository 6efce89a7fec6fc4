/**
 * Recording what became of each call, per registry host, for `status` and `doctor`: answered from
 * the cache, with a token fetched on the call (cold), failed (the step, message and hint), and
 * from the background refresh, refreshed or not (with its backoff). Never a token or a key: only
 * times, steps and redacted messages. Recording never fails a call: every error is swallowed.
 *
 * This is the warm path's part, kept small (its import is paid by every call): the API, its
 * types, and the journal of answers from the cache, `status-<host>.hits` in the cache directory,
 * to which a warm call appends one line. The record itself, `status-<host>.json`, and everything
 * that reads or rewrites it live in lib/status_record.ts, loaded only when the journal is folded
 * (other outcomes, a full journal) or read. Synchronous file calls: a few µs each in a process
 * with nothing else to do, against ~0.1 ms for the first call of each async op.
 *
 * @module
 */

import { unsafeDirectory } from "./cache.ts";
import { describe, PluginError } from "./errors.ts";

/**
 * What became of one call, or of one background refresh: answered from the cache, answered with
 * a token fetched on the call, failed; a background refresh that succeeded or failed.
 */
export type Outcome = "cache" | "cold" | "failed" | "refreshed" | "refresh-failed";

/** The times of a docker token, epoch seconds. Never the token. */
export interface TokenTimes {
  /** When it was obtained, when known. */
  obtainedAt?: number;
  /** When the plugin stops reusing it. */
  refreshAt: number;
  expiresAt: number;
}

/** Why a call or refresh failed, as the operator reads it in kubelet's log. */
export interface FailureRecord {
  step: string;
  code?: string;
  /** The host the step was talking to (the auth service, IMDS, the registry). */
  host?: string;
  message: string;
  hint?: string;
}

/** What a caller reports about one call. */
export interface OutcomeReport {
  outcome: Outcome;
  /** The token answered or obtained, if any. */
  token?: TokenTimes;
  /** Why it failed. */
  error?: FailureRecord;
  /** A failed background refresh: no new attempt before this time (epoch seconds). */
  backoffUntil?: number;
  /** How long the call took, ms. */
  ms?: number;
}

/**
 * What a thrown value says, as a record: a PluginError's step, code, host, reason and hint;
 * anything else as an internal error at `step`.
 *
 * @example
 * ```ts
 * import { PluginError } from "./errors.ts";
 * failureOf(new PluginError("IMDS", "TIMEOUT", "no answer in 10 s"), "IMDS");
 * // { step: "IMDS", code: "TIMEOUT", host: undefined, message: "no answer in 10 s", hint: undefined }
 * ```
 */
export function failureOf(error: unknown, step: string): FailureRecord {
  if (error instanceof PluginError) {
    const { code, host, reason, hint } = error;
    return { step: error.step, code, host, message: reason, hint };
  }
  return { step, message: `internal error: ${describe(error)}` };
}

/** Options of {@linkcode recordOutcome}, for tests. */
export interface RecordOptions {
  /** Epoch seconds. */
  now?: number;
  /** When the node booted, epoch seconds, for the counts (default: from its uptime). */
  bootedAt?: number;
}

/**
 * The journal of a host's answers from the cache, folded into its record now and then.
 *
 * @example
 * ```ts
 * hitsPath("/var/lib/oke-credential-provider", "iad.ocir.io");
 * // "/var/lib/oke-credential-provider/status-iad.ocir.io.hits"
 * ```
 */
export function hitsPath(dir: string, host: string): string {
  return `${dir}/status-${host}.hits`;
}

/** The journal is folded into the record once it is this long (~90 answers). */
export const MAX_HITS_BYTES = 8 * 1024;

/** Appends one answer from the cache to the journal, if there is one (no symlink) to append to. */
function appendHit(
  dir: string,
  host: string,
  line: Uint8Array,
): { appended: boolean; full: boolean } {
  const path = hitsPath(dir, host);
  let file: Deno.FsFile;
  try {
    // Only the fold creates the journal (exclusively, never through a symlink): no `create` here,
    // and a symlink planted in its place is not written through: its real path is elsewhere
    // (realpath: 0.02 ms where a first lstat costs 0.2). The directory is ours alone, so nothing
    // can swap the file between the two calls.
    if (Deno.realPathSync(path) !== hitsPath(Deno.realPathSync(dir), host)) {
      return { appended: false, full: true };
    }
    file = Deno.openSync(path, { append: true });
  } catch {
    return { appended: false, full: true };
  }
  try {
    // One write of one line: appends from processes side by side never interleave.
    file.writeSync(line);
    const size = file.seekSync(0, Deno.SeekMode.Current);
    return { appended: true, full: size >= MAX_HITS_BYTES };
  } finally {
    file.close();
  }
}

/**
 * Records what became of one call for `host`, in the cache directory `dir` (which must exist:
 * nothing is recorded without a cache). Never throws: a record that cannot be written is skipped.
 *
 * An answer from the cache (the warm path) appends one line to the host's journal: no new file,
 * no rename, ~0.2 ms even while the disk is busy with image pulls. Every other outcome, and every
 * ~90th answer from the cache, folds the journal into the record, which is replaced whole
 * (lib/status_record.ts, loaded then only).
 * Appenders share an flock on the directory and a fold takes it alone, so no count is lost.
 *
 * @example
 * ```ts
 * await recordOutcome("/var/lib/oke-credential-provider", "iad.ocir.io", {
 *   outcome: "cache",
 *   token: { refreshAt: 1767229200, expiresAt: 1767229500 },
 * });
 * ```
 */
export async function recordOutcome(
  dir: string,
  host: string,
  report: OutcomeReport,
  options: RecordOptions = {},
): Promise<void> {
  let lock: Deno.FsFile | undefined;
  try {
    // The directory itself is the lock: no extra file to plant or to clean up.
    lock = Deno.openSync(dir, { read: true });
    let pending: OutcomeReport | undefined = report;
    if (report.outcome === "cache") {
      lock.lockSync(false);
      const at = options.now ?? Date.now() / 1000;
      const { token, ms } = report;
      const line = new TextEncoder().encode(`${JSON.stringify({ at, token, ms })}\n`);
      const { appended, full } = appendHit(dir, host, line);
      if (!full) return;
      if (appended) pending = undefined;
    }
    lock.lockSync(true);
    // The cold path answers without caching from a directory someone else controls: nothing
    // is recorded there either. (A warm answer came from a directory the cache found safe.)
    if (unsafeDirectory(Deno.lstatSync(dir))) return;
    const { fold } = await import("./status_record.ts");
    fold(dir, host, pending, options);
  } catch {
    // Unwritable, full, read-only, not allowed: the record is a diagnostic, never worth a call.
  } finally {
    lock?.close();
  }
}
