/**
 * The token cache on disk: the security token with its session key, and one docker token per
 * registry host. Files are 0600 in a 0700 directory and replaced atomically (temp file, fsync,
 * rename), so a reader never sees a torn file, even when a writer is killed mid-write. Anything
 * unreadable is treated as absent and rewritten. A lock file serializes the processes that miss
 * the cache, so that only one of them federates; the kernel drops the lock if its holder dies.
 *
 * This module is on the warm path: it imports nothing heavy.
 *
 * @module
 */

/** The documented default cache directory. */
export const DEFAULT_CACHE_DIR = "/var/lib/oke-credential-provider";

/** A docker token as cached for one registry host. */
export interface CachedDockerToken {
  host: string;
  token: string;
  /** Epoch seconds; the token is reused until then. */
  refreshAt: number;
  expiresAt: number;
  /** The instance certificate fingerprint and tenancy it was obtained with. */
  fingerprint: string;
  tenancy: string;
}

/** The cached security token and its session key. */
export interface CachedSession {
  token: string;
  refreshAt: number;
  expiresAt: number;
  fingerprint: string;
  tenancy: string;
  /** The session private key, PKCS#8 DER, base64. */
  privateKey: string;
}

/**
 * When to stop reusing a token: shortly before it expires, by a tenth of its lifetime and at
 * most 5 minutes (OCI's Go SDK refreshes security tokens 5 minutes early; an hour-long docker
 * token gives kubelet `55m0s`).
 *
 * @example
 * ```ts
 * refreshTime(0, 3600); // 3300
 * ```
 */
export function refreshTime(issuedAt: number, expiresAt: number): number {
  return expiresAt - Math.min(300, Math.floor((expiresAt - issuedAt) / 10));
}

const now = () => Date.now() / 1000;
const isString = (v: unknown): v is string => typeof v === "string" && v !== "";
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const value = JSON.parse(await Deno.readTextFile(path));
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined; // absent, unreadable or corrupt: the same as no cache
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
  return `${dir}/docker-${host}.json`;
}

/**
 * The cached docker token for `host`, if there is one still worth using.
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
  const v = await readJson(dockerTokenPath(dir, host));
  if (
    !v || v.host !== host || !isString(v.token) || !isTime(v.refreshAt) || !isTime(v.expiresAt) ||
    !isString(v.fingerprint) || !isString(v.tenancy) || v.refreshAt <= at
  ) return undefined;
  return v as unknown as CachedDockerToken;
}

/**
 * The cached session, if there is one still worth using.
 *
 * @example
 * ```ts
 * const session = await readSession(DEFAULT_CACHE_DIR);
 * ```
 */
export async function readSession(dir: string, at = now()): Promise<CachedSession | undefined> {
  const v = await readJson(`${dir}/session.json`);
  if (
    !v || !isString(v.token) || !isTime(v.refreshAt) || !isTime(v.expiresAt) ||
    !isString(v.fingerprint) ||
    !isString(v.tenancy) || !isString(v.privateKey) || v.refreshAt <= at
  ) return undefined;
  return v as unknown as CachedSession;
}

/**
 * Makes sure `dir` exists as a directory only its owner can use. Throws when it cannot.
 *
 * @example
 * ```ts
 * await prepareCacheDir(DEFAULT_CACHE_DIR);
 * ```
 */
export async function prepareCacheDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.stat(dir);
  if (!info.isDirectory) throw new Error(`${dir} is not a directory`);
  if (((info.mode ?? 0) & 0o777) !== 0o700) await Deno.chmod(dir, 0o700);
  // Prove we can write: a read-only directory should be found now, not after federating.
  const probe = `${dir}/.probe-${Deno.pid}`;
  await Deno.writeTextFile(probe, "", { mode: 0o600 });
  await Deno.remove(probe);
}

async function writeAtomically(path: string, value: unknown): Promise<void> {
  const temp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(value)));
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
  await writeAtomically(dockerTokenPath(dir, entry.host), entry);
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
  await writeAtomically(`${dir}/session.json`, session);
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
  await removeMatching(dir, /^(docker-.*|session)\.json$/);
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
  const file = await Deno.open(`${dir}/lock`, {
    read: true,
    write: true,
    create: true,
    mode: 0o600,
  });
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
