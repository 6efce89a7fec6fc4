/**
 * The token cache on disk: the security token with its session key, a spare session key and one
 * docker token per registry host (the background refreshes' own files: lib/refresh_record.ts),
 * and the hardened file access every cache file goes through. Files are 0600 in a 0700 directory
 * and replaced atomically (temp file, fsync, rename), so a reader never sees a torn file, even
 * when a writer is killed mid-write. Anything unreadable is treated as absent and rewritten. A
 * lock file serializes the processes that miss the cache, so that only one of them federates;
 * the kernel drops the lock if its holder dies. When an entry may be answered is
 * lib/freshness.ts's to say.
 *
 * The plugin runs as root, so a directory or file someone else controls must never be trusted:
 * the directory must be this process's user's own, not a symbolic link and writable by no one
 * else; files are never opened through a symbolic link (Deno has no O_NOFOLLOW: each file is
 * checked with lstat before opening and the open handle's device and inode compared after),
 * files owned by another user are ignored, and new files are only ever created exclusively.
 *
 * This module is on the warm path: it imports nothing heavy.
 *
 * @module
 */

import { describe, PluginError } from "./errors.ts";
import { freshness, type Lifetime } from "./freshness.ts";
import type { Logger } from "./log.ts";

/** The documented default cache directory. */
export const DEFAULT_CACHE_DIR = "/var/lib/oke-credential-provider";

/**
 * A docker token as cached for one registry host, with the times lib/freshness.ts judges it by
 * (`obtainedAt` and `refreshAt` by our clock, `issuedAt`/`expiresAt` by the issuer's).
 */
export interface CachedDockerToken extends Lifetime {
  host: string;
  token: string;
  /** The instance certificate fingerprint and tenancy it was obtained with. */
  fingerprint: string;
  tenancy: string;
}

/** The cached security token and its session key; reused until `usableUntil` (lib/freshness.ts). */
export interface CachedSession extends Lifetime {
  token: string;
  fingerprint: string;
  tenancy: string;
  /** The session private key, PKCS#8 DER, base64. */
  privateKey: string;
}

const now = () => Date.now() / 1000;
const isString = (v: unknown): v is string => typeof v === "string" && v !== "";
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const hasTimes = (v: Record<string, unknown>) =>
  isTime(v.obtainedAt) && isTime(v.issuedAt) && isTime(v.expiresAt) && isTime(v.refreshAt);

// Cache files are small JSON documents; anything bigger was not written by the plugin.
const MAX_FILE_BYTES = 64 * 1024;

const refused = (reason: string) => new PluginError("cache", "REFUSED", reason);

/** Stats `path` without following a symbolic link; undefined when nothing is there. */
async function lstatIfAny(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Why a directory may not hold the cache (or the record beside it), or undefined when it may:
 * `info` is its lstat.
 *
 * @example
 * ```ts
 * unsafeDirectory(Deno.lstatSync(DEFAULT_CACHE_DIR)); // undefined: root's own, 0700
 * ```
 */
export function unsafeDirectory(info: Deno.FileInfo): string | undefined {
  if (info.isSymlink) return "is a symbolic link";
  if (!info.isDirectory) return "is not a directory";
  const uid = Deno.uid();
  if (info.uid !== uid) return `is owned by uid ${info.uid}, not by this process's uid ${uid}`;
  const mode = (info.mode ?? 0) & 0o777;
  if (mode & 0o022) {
    return `is writable by other users (mode ${mode.toString(8).padStart(4, "0")})`;
  }
  return undefined;
}

const sameFile = (a: Deno.FileInfo, b: Deno.FileInfo) => a.dev === b.dev && a.ino === b.ino;

/**
 * Opens an existing regular file of this user's without following a symbolic link: what `lstat`
 * saw at the path must be the very file the handle has open, else someone swapped it meanwhile.
 */
async function openOwnFile(
  path: string,
  before: Deno.FileInfo,
  options: Deno.OpenOptions,
): Promise<Deno.FsFile> {
  if (!before.isFile) {
    throw refused(`${path} is ${before.isSymlink ? "a symbolic link" : "not a regular file"}`);
  }
  if (before.uid !== Deno.uid()) throw refused(`${path} is owned by uid ${before.uid}`);
  const file = await Deno.open(path, options);
  try {
    if (sameFile(before, await file.stat())) return file;
  } catch (e) {
    file.close();
    throw e;
  }
  file.close();
  throw refused(`${path} was replaced while it was being opened`);
}

/**
 * The JSON object of cache file `name` in `dir`, or undefined when it is absent, unreadable,
 * corrupt, or not safely ours (a symbolic link, another user's, in an unsafe directory).
 *
 * @example
 * ```ts
 * const value = await readJson("/var/lib/oke-credential-provider", "session.json");
 * ```
 */
export async function readJson(
  dir: string,
  name: string,
): Promise<Record<string, unknown> | undefined> {
  try {
    const info = await lstatIfAny(dir);
    if (!info || unsafeDirectory(info)) return undefined;
    const path = `${dir}/${name}`;
    const before = await lstatIfAny(path);
    if (!before || before.size > MAX_FILE_BYTES) return undefined;
    const file = await openOwnFile(path, before, { read: true });
    let text: string;
    try {
      const bytes = new Uint8Array(before.size);
      let filled = 0;
      while (filled < bytes.length) {
        const n = await file.read(bytes.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      text = new TextDecoder().decode(bytes.subarray(0, filled));
    } finally {
      file.close();
    }
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    // Absent, unreadable, corrupt, planted by someone else: the same as no cache.
    return undefined;
  }
}

/**
 * The file of a registry host's docker token; hosts are checked OCIR names, safe as file names.
 *
 * @example
 * ```ts
 * dockerTokenPath("/var/lib/oke-credential-provider", "iad.ocir.io");
 * // "/var/lib/oke-credential-provider/docker-iad.ocir.io.json"
 * ```
 */
export function dockerTokenPath(dir: string, host: string): string {
  return `${dir}/${dockerTokenName(host)}`;
}

const dockerTokenName = (host: string) => `docker-${host}.json`;
const SESSION_NAME = "session.json";

/**
 * The cached docker token for `host`, if there is one that may still be answered (fresh or
 * stale: `freshness` of lib/freshness.ts tells which).
 *
 * @example
 * ```ts
 * const cached = await readDockerToken(DEFAULT_CACHE_DIR, "iad.ocir.io");
 * ```
 */
export async function readDockerToken(
  dir: string,
  host: string,
  at = now(),
): Promise<CachedDockerToken | undefined> {
  const v = await readJson(dir, dockerTokenName(host));
  if (
    !v || v.host !== host || !isString(v.token) || !hasTimes(v) ||
    !isString(v.fingerprint) || !isString(v.tenancy) ||
    (v.denied !== undefined && typeof v.denied !== "boolean")
  ) return undefined;
  const entry = v as unknown as CachedDockerToken;
  return freshness(entry, at).state === "unusable" ? undefined : entry;
}

/**
 * The cached session, if it may still be used (before `usableUntil` of lib/freshness.ts).
 *
 * @example
 * ```ts
 * const session = await readSession(DEFAULT_CACHE_DIR);
 * ```
 */
export async function readSession(dir: string, at = now()): Promise<CachedSession | undefined> {
  const v = await readJson(dir, SESSION_NAME);
  if (
    !v || !isString(v.token) || !hasTimes(v) || !isString(v.fingerprint) ||
    !isString(v.tenancy) || !isString(v.privateKey)
  ) return undefined;
  const session = v as unknown as CachedSession;
  return freshness(session, at).state === "unusable" ? undefined : session;
}

/**
 * Makes sure `dir` exists as a directory only this process's user can use: created 0700 when
 * missing, tightened to 0700 when merely readable by others. Throws a {@linkcode PluginError}
 * (step `cache`) for one that is a symbolic link, not a directory, owned by another user or
 * writable by others: a token read from or written to it could be planted or stolen.
 *
 * @example
 * ```ts
 * await prepareCacheDir(DEFAULT_CACHE_DIR);
 * ```
 */
export async function prepareCacheDir(dir: string): Promise<void> {
  let info = await lstatIfAny(dir);
  if (!info) {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    info = await Deno.lstat(dir);
  }
  const unsafe = unsafeDirectory(info);
  if (unsafe) {
    throw refused(
      `${unsafe}: make it a directory of the plugin's user, mode 0700, or point --cache-dir elsewhere`,
    );
  }
  if (((info.mode ?? 0) & 0o777) !== 0o700) await Deno.chmod(dir, 0o700);
  // Prove we can write: a read-only directory should be found now, not after federating. A
  // random name created exclusively: nothing planted at a predictable path is ever opened.
  const probe = `${dir}/.probe-${crypto.randomUUID()}`;
  (await Deno.open(probe, { write: true, createNew: true, mode: 0o600 })).close();
  await Deno.remove(probe);
  if (!sameFile(info, await Deno.lstat(dir))) throw refused("was replaced while being checked");
}

/**
 * Replaces the file at `path` with `text` atomically: a temp file beside it (`.tmp`, which
 * node_exporter's textfile collector and our cache readers ignore), fsynced, renamed over it.
 *
 * @example
 * ```ts
 * await writeFileAtomically("/var/lib/oke-credential-provider/note.json", JSON.stringify({ ok: 1 }));
 * ```
 */
export async function writeFileAtomically(path: string, text: string, mode = 0o600): Promise<void> {
  const temp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode });
  try {
    // The umask may have narrowed `mode`; a metrics file must be readable by its collector.
    if (mode !== 0o600) await Deno.chmod(temp, mode);
    const bytes = new TextEncoder().encode(text);
    for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    await file.syncData();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/**
 * Stores a docker token.
 *
 * @example
 * ```ts
 * declare const entry: CachedDockerToken; // host, token, lifetime, what it was made with
 * await writeDockerToken(DEFAULT_CACHE_DIR, entry);
 * ```
 */
export async function writeDockerToken(dir: string, entry: CachedDockerToken): Promise<void> {
  await writeFileAtomically(dockerTokenPath(dir, entry.host), JSON.stringify(entry));
}

/**
 * Stores the session.
 *
 * @example
 * ```ts
 * declare const session: CachedSession;
 * await writeSession(DEFAULT_CACHE_DIR, session);
 * ```
 */
export async function writeSession(dir: string, session: CachedSession): Promise<void> {
  await writeFileAtomically(`${dir}/${SESSION_NAME}`, JSON.stringify(session));
}

async function removeMatching(dir: string, pattern: RegExp): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (pattern.test(entry.name)) await Deno.remove(`${dir}/${entry.name}`).catch(() => {});
  }
}

/**
 * Removes every cached token: the instance certificate or tenancy they were made with is gone.
 *
 * @example
 * ```ts
 * await clearTokens(DEFAULT_CACHE_DIR);
 * ```
 */
export async function clearTokens(dir: string): Promise<void> {
  await removeMatching(dir, /^(docker-.*|workload-.*|session)\.json$/);
}

/**
 * Removes temp files left by writers killed mid-write. Call it holding the lock: every writer
 * holds it, so a temp file seen then belongs to a dead process.
 *
 * @example
 * ```ts
 * await removeTempFiles(DEFAULT_CACHE_DIR);
 * ```
 */
export async function removeTempFiles(dir: string): Promise<void> {
  await removeMatching(dir, /\.tmp$/);
}

/**
 * Opens the lock file, creating it exclusively when absent; a lock path that is a directory, a
 * symbolic link (dangling or not) or another user's file is refused, never followed.
 */
async function openLockFile(path: string): Promise<Deno.FsFile> {
  const options = { read: true, write: true };
  for (;;) {
    const before = await lstatIfAny(path);
    if (before) return await openOwnFile(path, before, options);
    try {
      return await Deno.open(path, { ...options, createNew: true, mode: 0o600 });
    } catch (e) {
      // Another process created it between our lstat and open: look again.
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/**
 * Takes the cache's exclusive lock, waiting at most until `signal` aborts. The lock is the
 * kernel's (flock), so a holder killed with SIGKILL releases it.
 *
 * @example
 * ```ts
 * const lock = await lockCache(DEFAULT_CACHE_DIR, AbortSignal.timeout(45_000));
 * try {
 *   // read, fetch, write
 * } finally {
 *   lock.release();
 * }
 * ```
 */
export async function lockCache(dir: string, signal: AbortSignal): Promise<{ release(): void }> {
  const file = await openLockFile(`${dir}/lock`);
  const aborted = new Promise<never>((_, reject) => {
    const fail = () => reject(new DOMException("waiting for the cache lock", "TimeoutError"));
    if (signal.aborted) fail();
    signal.addEventListener("abort", fail, { once: true });
  });
  const locking = file.lock(true);
  try {
    await Promise.race([locking, aborted]);
  } catch (e) {
    // The kernel call cannot be cancelled: if it succeeds after we gave up, let go at once.
    locking.then(() => file.close(), () => file.close());
    throw e;
  }
  return { release: () => file.close() };
}

/**
 * Runs `work` holding the cache lock ({@linkcode lockCache}), after removing what writers killed
 * mid-write left behind; the lock is released however `work` ends.
 *
 * @example
 * ```ts
 * const dir = DEFAULT_CACHE_DIR;
 * const entry = await withCacheLock(dir, AbortSignal.timeout(45_000), () => readDockerToken(dir, "iad.ocir.io"));
 * ```
 */
export async function withCacheLock<T>(
  dir: string,
  signal: AbortSignal,
  work: () => Promise<T>,
): Promise<T> {
  const lock = await lockCache(dir, signal);
  try {
    await removeTempFiles(dir);
    return await work();
  } finally {
    lock.release();
  }
}

/** A session key made ahead of use: PKCS#8 and SPKI DER, base64. */
export interface SpareKey {
  privateKey: string;
  publicKey: string;
}

const SPARE_KEY_NAME = "session-key.spare.json";
const spareKeyPath = (dir: string) => `${dir}/${SPARE_KEY_NAME}`;

/**
 * Stores a spare session key (0600, beside `session.json`), replacing any earlier spare. Call it
 * holding the lock, as every writer does (an unlocked writer's temp file could be swept away).
 *
 * @example
 * ```ts
 * declare const key: SpareKey; // base64 PKCS#8 and SPKI of a new key pair
 * await writeSpareKey(DEFAULT_CACHE_DIR, key);
 * ```
 */
export async function writeSpareKey(dir: string, key: SpareKey): Promise<void> {
  await writeFileAtomically(spareKeyPath(dir), JSON.stringify(key));
}

/**
 * Whether a spare session key is waiting.
 *
 * @example
 * ```ts
 * await hasSpareKey(DEFAULT_CACHE_DIR); // true when the next federation need not make a key
 * ```
 */
export async function hasSpareKey(dir: string): Promise<boolean> {
  return await Deno.lstat(spareKeyPath(dir)).then((info) => info.isFile, () => false);
}

/**
 * Takes the spare session key, if there is one, so that nobody else can: it is renamed away
 * (atomic, so of two takers only one gets it), read and deleted. Each spare serves one
 * federation only. Call it holding the lock.
 *
 * @example
 * ```ts
 * const spare = await takeSpareKey(DEFAULT_CACHE_DIR); // undefined when none is waiting
 * ```
 */
export async function takeSpareKey(dir: string): Promise<SpareKey | undefined> {
  // A .tmp name: if we die before deleting it, removeTempFiles does.
  const taken = `${SPARE_KEY_NAME}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.rename(spareKeyPath(dir), `${dir}/${taken}`);
  } catch {
    return undefined;
  }
  try {
    // Read like every cache file: never through a symbolic link, never another user's.
    const v = await readJson(dir, taken);
    return v && isString(v.privateKey) && isString(v.publicKey)
      ? { privateKey: v.privateKey, publicKey: v.publicKey }
      : undefined;
  } finally {
    await Deno.remove(`${dir}/${taken}`).catch(() => {});
  }
}

/**
 * Runs a cache write whose failure (disk full, read-only) costs only caching, never the answer:
 * the failure is logged as a warning.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 *
 * declare const entry: CachedDockerToken;
 * await writeQuietly(createLogger("warn"), "docker token", () => writeDockerToken(DEFAULT_CACHE_DIR, entry));
 * ```
 */
export async function writeQuietly(
  log: Logger,
  what: string,
  write: () => Promise<void>,
): Promise<void> {
  try {
    await write();
  } catch (e) {
    log.warn(
      "cache",
      `could not cache the ${what} (${describe(e)}); the next invocation will fetch again`,
    );
  }
}
