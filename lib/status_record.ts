/**
 * The record of a registry host's calls, `status-<host>.json` in the cache directory: the last
 * {@linkcode MAX_EVENTS} events (answers from the cache with one token fold into one event with a
 * count), the last failure kept aside, counts since boot, the latest token's times and the
 * refresh backoff. 0600 like the cache, bounded by {@linkcode MAX_RECORD_BYTES}, and replaced
 * whole (a temp file created exclusively, renamed over it) by a fold, which adds the journal that
 * lib/status.ts appends to, under the cache directory's flock held alone. No fsync: a record lost
 * to a power cut costs nothing; the rename still keeps every reader from a torn file.
 *
 * @module
 */

import { unsafeDirectory } from "./cache.ts";
import { redact } from "./log.ts";
import {
  hitsPath,
  type Outcome,
  type OutcomeReport,
  type RecordOptions,
  type TokenTimes,
} from "./status.ts";

/** Every {@linkcode Outcome}, in the order reports list them. */
export const OUTCOMES: readonly Outcome[] = [
  "cache",
  "cold",
  "failed",
  "refreshed",
  "refresh-failed",
];

/** One recorded event: a call (or several folded answers from the cache) or a refresh. */
export interface StatusEvent extends OutcomeReport {
  /** When it happened, epoch seconds (of the first, when folded). */
  at: number;
  /** Folded answers from the cache: how many, and the last one's time. */
  times?: number;
  lastAt?: number;
}

/** Everything recorded for one registry host. */
export interface HostRecord {
  host: string;
  /** When the node booted (epoch seconds; 0 if unknown), for the counts. */
  bootedAt: number;
  /** Outcomes since boot. */
  counts: Record<Outcome, number>;
  /** When each outcome last happened (epoch seconds), however long ago. */
  lastAt: Partial<Record<Outcome, number>>;
  /** Oldest first, at most {@linkcode MAX_EVENTS}. */
  events: StatusEvent[];
  /** The last failure (of a call or a refresh), kept however many events came since. */
  lastFailure?: StatusEvent;
  /** The latest token the node got for the host. */
  token?: TokenTimes;
  /** From the last failed refresh, until a refresh succeeds. */
  backoffUntil?: number;
}

/** Events kept per host; with folding, a day of kubelet's calls fits many times over. */
export const MAX_EVENTS = 32;
/** Longest message or hint kept, in characters. */
const MAX_TEXT = 300;
/**
 * What a record file can grow to: {@linkcode MAX_EVENTS} + 1 failures with the longest message,
 * hint and host, with room to spare. tests/status_test.ts proves it after 10 000 calls.
 */
export const MAX_RECORD_BYTES = 64 * 1024;

/**
 * The record file of a registry host; hosts are checked OCIR names, safe as file names.
 *
 * @example
 * ```ts
 * statusPath("/var/lib/oke-credential-provider", "iad.ocir.io");
 * // "/var/lib/oke-credential-provider/status-iad.ocir.io.json"
 * ```
 */
export function statusPath(dir: string, host: string): string {
  return `${dir}/status-${host}.json`;
}

/**
 * When the node booted, epoch seconds, from its uptime (Deno reads no /proc file without full
 * access; the binary may ask the uptime only). 0 if unknown: counts then run on across boots.
 */
function bootTime(): number {
  try {
    return Date.now() / 1000 - Deno.osUptime();
  } catch {
    return 0;
  }
}

/**
 * Boot times this close are one boot: the wall clock under the uptime may be stepped meanwhile
 * (NTP). A step larger than this starts the counts again once.
 */
const SAME_BOOT_SECONDS = 120;

const emptyCounts = (): Record<Outcome, number> =>
  Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;

/** One line of text, redacted and bounded, for a message or hint from any source. */
function clean(text: string): string {
  const line = redact(text).replace(/\s+/g, " ").replace(/\p{C}/gu, "?").trim();
  return line.length > MAX_TEXT ? `${line.slice(0, MAX_TEXT - 1)}…` : line;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A record read back, or undefined when absent, corrupt or for another host. */
function parseRecord(text: string, host?: string): HostRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (
    !isObject(v) || typeof v.host !== "string" || (host !== undefined && v.host !== host) ||
    typeof v.bootedAt !== "number" || !isObject(v.counts) || !Array.isArray(v.events)
  ) return undefined;
  const counts = emptyCounts();
  for (const o of OUTCOMES) {
    const n = v.counts[o];
    if (typeof n === "number" && Number.isSafeInteger(n) && n >= 0) counts[o] = n;
  }
  const events = v.events.filter((e): e is StatusEvent =>
    isObject(e) && OUTCOMES.includes(e.outcome as Outcome) && typeof e.at === "number"
  ).slice(-MAX_EVENTS);
  const lastAt: HostRecord["lastAt"] = {};
  for (const o of OUTCOMES) {
    const t = isObject(v.lastAt) ? v.lastAt[o] : undefined;
    if (typeof t === "number" && Number.isFinite(t)) lastAt[o] = t;
  }
  return { ...(v as unknown as HostRecord), counts, lastAt, events };
}

/** Adds one event to a record (a copy is not needed: the record is rewritten whole). */
function addEvent(record: HostRecord, report: OutcomeReport, at: number): HostRecord {
  const event: StatusEvent = { at, ...report };
  if (event.error) {
    const { step, code, host, message, hint } = event.error;
    event.error = { step, code, host, message: clean(message), hint: hint && clean(hint) };
  }
  record.counts[report.outcome]++;
  record.lastAt[report.outcome] = at;
  const last = record.events.at(-1);
  // Answers from the cache with the same token read as one line: "from cache ×120 since 14:02".
  if (
    report.outcome === "cache" && last?.outcome === "cache" &&
    last.token?.expiresAt === report.token?.expiresAt
  ) {
    last.times = (last.times ?? 1) + 1;
    last.lastAt = at;
  } else {
    record.events.push(event);
    if (record.events.length > MAX_EVENTS) {
      record.events.splice(0, record.events.length - MAX_EVENTS);
    }
  }
  if (report.token) record.token = report.token;
  if (report.outcome === "failed" || report.outcome === "refresh-failed") {
    record.lastFailure = event;
  }
  if (report.outcome === "refresh-failed") record.backoffUntil = report.backoffUntil;
  if (report.outcome === "refreshed") delete record.backoffUntil;
  return record;
}

/** Replaces `path` with `text`: a temp file (created exclusively) renamed over it. */
function replace(path: string, text: string): void {
  // One writer at a time (the lock), so one temp name. Not `.tmp`: the cache's clean-up of those
  // runs under another lock.
  const temp = `${path}.part`;
  const write = () => Deno.writeTextFileSync(temp, text, { createNew: true, mode: 0o600 });
  try {
    try {
      write();
    } catch (e) {
      // Left by a writer killed mid-write (or planted: createNew follows no symlink).
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      Deno.removeSync(temp);
      write();
    }
    Deno.renameSync(temp, path);
  } catch (e) {
    try {
      Deno.removeSync(temp); // a symlink is removed, not followed
    } catch {
      // absent
    }
    throw e;
  }
}

/** The answers from the cache in a journal; a line cut short by a crash is left out. */
function parseHits(text: string): StatusEvent[] {
  const hits: StatusEvent[] = [];
  for (const line of text.split("\n")) {
    try {
      const hit = JSON.parse(line);
      if (!isObject(hit) || typeof hit.at !== "number") continue;
      const { at, token, ms } = hit as unknown as StatusEvent;
      hits.push({ outcome: "cache", at, token, ms });
    } catch {
      // a torn or empty line
    }
  }
  return hits;
}

const readOr = (path: string, absent: string) => {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return absent; // absent or unreadable: start again
  }
};

/**
 * A host's record as of now: counts started again if the node booted since, the journal folded
 * in. Answers journaled just before a reboot count toward the new boot (at most ~90).
 */
function current(dir: string, host: string, saved: HostRecord | undefined, bootedAt = bootTime()) {
  let record = saved ?? { host, bootedAt, counts: emptyCounts(), lastAt: {}, events: [] };
  if (Math.abs(record.bootedAt - bootedAt) >= SAME_BOOT_SECONDS) {
    record = { ...record, bootedAt, counts: emptyCounts() };
  }
  for (const hit of parseHits(readOr(hitsPath(dir, host), ""))) addEvent(record, hit, hit.at);
  return record;
}

/**
 * Folds the journal (and `report`, if it is not in it) into the record; the journal restarts.
 * Call it holding the cache directory's flock alone (lib/status.ts does).
 *
 * @example
 * ```ts
 * fold("/var/lib/oke-credential-provider", "iad.ocir.io", { outcome: "cold" }, {});
 * ```
 */
export function fold(
  dir: string,
  host: string,
  report: OutcomeReport | undefined,
  options: RecordOptions,
) {
  const path = statusPath(dir, host);
  const record = current(dir, host, parseRecord(readOr(path, ""), host), options.bootedAt);
  if (report) addEvent(record, report, options.now ?? Date.now() / 1000);
  replace(path, JSON.stringify(record));
  replace(hitsPath(dir, host), "");
}

/**
 * Every host's record in the cache directory `dir`, with its journal folded in (in memory: reading
 * changes nothing), sorted by host; none when there is no directory. Unreadable or corrupt files
 * are left out. `bootedAt` is for tests: the boot the counts are wanted for.
 *
 * @example
 * ```ts
 * for (const record of await readStatus("/var/lib/oke-credential-provider")) {
 *   console.log(record.host, record.counts.failed);
 * }
 * ```
 */
export async function readStatus(dir: string, bootedAt = bootTime()): Promise<HostRecord[]> {
  let lock: Deno.FsFile;
  try {
    lock = await Deno.open(dir, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  try {
    const unsafe = unsafeDirectory(await Deno.lstat(dir));
    if (unsafe) throw new Error(`${dir} ${unsafe}: its record is not to be trusted`);
    // Shared, as appenders hold it: no fold runs while the record and its journal are read.
    await lock.lock(false);
    const records: HostRecord[] = [];
    for await (const entry of Deno.readDir(dir)) {
      const m = /^status-(.+)\.json$/.exec(entry.name);
      if (!m || !entry.isFile) continue;
      const saved = parseRecord(readOr(`${dir}/${entry.name}`, ""), m[1]);
      if (saved) records.push(current(dir, m[1], saved, bootedAt));
    }
    return records.sort((a, b) => a.host.localeCompare(b.host));
  } finally {
    lock.close();
  }
}
