/**
 * The cold path: a docker token for a registry host when the cache has no usable one, and the
 * refresh of a stale one. Four steps, under the cache lock so that of many processes started
 * together only one talks to IMDS and the auth service: 1. the instance's identity from IMDS;
 * 2. a session (lib/session.ts: cached, or a federation with a key readied while IMDS answers);
 * 3. a docker token from the registry host; 4. with `--check-pull`, the token checked against the
 * image, then cached.
 *
 * @module
 */

import {
  type CachedDockerToken,
  DEFAULT_CACHE_DIR,
  prepareCacheDir,
  readDockerToken,
  withCacheLock,
  writeDockerToken,
  writeQuietly,
} from "./cache.ts";
import { describe, PluginError } from "./errors.ts";
import { freshness, refreshPoint } from "./freshness.ts";
import { type Deadline, deadlineError } from "./deadline.ts";
import { type InstanceIdentity, instanceIdentity } from "./identity.ts";
import { type ImageReference, type OcirHost, trustedRegistry } from "./image.ts";
import { fetchInstanceDocuments } from "./imds.ts";
import type { Logger } from "./log.ts";
import { fetchDockerToken, policyHint } from "./ocir.ts";
import { checkPull } from "./pull_check.ts";
import type { IssuedToken } from "./token.ts";
import { type OpenSession, openSession, type Session } from "./session.ts";

/** Where the plugin finds things, from flags and environment. */
export interface Settings {
  /** Cache directory. */
  cacheDir: string;
  /** IMDS base URLs, tried in order. */
  imdsBaseUrls: readonly string[];
  /** Federation endpoint override (`OCI_SDK_AUTH_CLIENT_REGION_URL`). */
  federationEndpoint?: string;
  deadline: Deadline;
  log: Logger;
  /** `--check-pull`: the image to check the new token against. */
  pullCheckImage?: ImageReference;
}

/** How long a token that cannot read the image is reused: long enough to spare a storm, short
 * enough that a newly added IAM policy applies within minutes (a token never gains a permission). */
export const DENIED_TOKEN_SECONDS = 120;

/** Why the cache cannot be used, for the warning: the plugin's words where it refused it. */
function cacheProblem(e: unknown): string {
  // The released binary may write only where scripts/build.ts allows; Deno's own message would
  // advise a flag that a compiled binary cannot take.
  if (e instanceof Deno.errors.NotCapable) {
    return `it is outside the paths this binary may write (${DEFAULT_CACHE_DIR}); use the default --cache-dir or mount storage there`;
  }
  return e instanceof PluginError && e.step === "cache" ? e.reason : describe(e);
}

/** Opens the cache, or explains on stderr why the plugin goes on without one. */
export async function usableCacheDir(settings: Settings): Promise<string | undefined> {
  try {
    await prepareCacheDir(settings.cacheDir);
    return settings.cacheDir;
  } catch (e) {
    settings.log.warn(
      "cache",
      `cannot use cache directory ${settings.cacheDir} (${
        cacheProblem(e)
      }); answering without caching`,
    );
    return undefined;
  }
}

/** The `--check-pull` verdict; a check that cannot be made does not hold the answer back. */
async function canPull(
  image: ImageReference,
  entry: CachedDockerToken,
  identity: InstanceIdentity,
  { deadline, log }: Settings,
): Promise<boolean> {
  try {
    const check = await checkPull(image, entry.host, entry.token, {
      deadline,
      log,
      realmDomain: identity.region.realmDomain,
    });
    if (check.allowed) return true;
    log.warn(
      "manifest check",
      `this token cannot read ${image.repository} (${check.detail}): ${
        policyHint(identity.compartment)
      }; it is cached for ${DENIED_TOKEN_SECONDS} s only`,
      entry.host,
    );
    return false;
  } catch (e) {
    log.warn(
      "manifest check",
      `could not check the token (${describe(e)}); caching it as usual`,
      entry.host,
    );
    return true;
  }
}

/** Step 3: a docker token for the host; a cached session that OCIR refuses is renewed once. */
async function dockerToken(
  registry: OcirHost,
  identity: InstanceIdentity,
  session: OpenSession,
  settings: Settings,
): Promise<IssuedToken> {
  const { deadline, log } = settings;
  const ask = (s: Session) =>
    fetchDockerToken(registry.host, {
      securityToken: s.token,
      sessionKey: s.privateKey,
      deadline,
      log,
    });
  try {
    return await ask(await session.get(identity));
  } catch (e) {
    // A cached security token can be refused before its expiry (revoked, the auth service's
    // keys rotated): one fresh federation tells a dead token from a missing policy.
    if (!session.reused || !(e instanceof PluginError && e.status === 401)) throw e;
    log.info(
      "OCIR token",
      "the cached security token was refused: federating again",
      registry.host,
    );
    return await ask(await session.renew(identity));
  }
}

/** The four steps of the cold path, under the cache lock when there is a cache. */
async function coldPath(
  registry: OcirHost,
  dir: string | undefined,
  settings: Settings,
): Promise<CachedDockerToken> {
  const { deadline, log } = settings;
  // Opened first: when no session is cached, its key is readied while IMDS answers.
  const session = await openSession(dir, settings);
  // 1. Who we are, and whether this host may have a token.
  const identity = await instanceIdentity(
    await fetchInstanceDocuments({ baseUrls: settings.imdsBaseUrls, deadline, log }),
  );
  trustedRegistry(registry.host, identity.region.realmDomain, "image");
  // 2 and 3. A session, and with it a docker token.
  const obtainedAt = Date.now() / 1000;
  const docker = await dockerToken(registry, identity, session, settings);
  const entry: CachedDockerToken = {
    host: registry.host,
    token: docker.token,
    obtainedAt,
    issuedAt: docker.issuedAt,
    expiresAt: docker.expiresAt,
    refreshAt: refreshPoint(obtainedAt, docker.expiresAt - docker.issuedAt),
    fingerprint: identity.fingerprint,
    tenancy: identity.tenancy,
  };
  // 4. Checked if asked, and cached.
  if (
    settings.pullCheckImage && !await canPull(settings.pullCheckImage, entry, identity, settings)
  ) {
    entry.refreshAt = Math.min(entry.refreshAt, obtainedAt + DENIED_TOKEN_SECONDS);
    entry.denied = true;
  }
  if (dir) await writeQuietly(log, "docker token", () => writeDockerToken(dir, entry));
  log.info(
    "OCIR token",
    `docker token valid until ${new Date(docker.expiresAt * 1000).toISOString()}`,
    registry.host,
  );
  return entry;
}

/**
 * Obtains a docker token for an OCIR host: one cached by another process meanwhile (usable, or
 * with `reuse: "fresh"` only one before its refresh point, as a refresh wants), or a new one.
 *
 * @example
 * ```ts
 * import { ocirHost } from "./image.ts";
 *
 * declare const settings: Settings; // cache directory, IMDS, deadline, log
 * const entry = await obtainDockerToken(ocirHost("iad.ocir.io")!, settings);
 * entry.token;
 * ```
 */
export async function obtainDockerToken(
  registry: OcirHost,
  settings: Settings,
  reuse: "usable" | "fresh" = "usable",
): Promise<CachedDockerToken> {
  const { log } = settings;
  return await underCacheLock(await usableCacheDir(settings), settings, async (dir) => {
    const cached = dir ? await readDockerToken(dir, registry.host) : undefined;
    if (
      cached && (reuse === "usable" || freshness(cached, Date.now() / 1000).state === "fresh")
    ) {
      log.debug("cache", "another invocation cached a token meanwhile", registry.host);
      return cached;
    }
    return await coldPath(registry, dir, settings);
  });
}

/**
 * Runs `work` with the cache directory `dir` held under the cache lock, or with none when there
 * is no usable cache or its lock cannot be taken (its path a directory or a symbolic link): that
 * costs only the cache, never the answer; running out of time waiting for it is the deadline's.
 * The node path and the per-workload path (lib/workload.ts) both obtain tokens this way.
 *
 * @example
 * ```ts
 * declare const settings: Settings;
 * const dir = await usableCacheDir(settings);
 * await underCacheLock(dir, settings, async (locked) => locked ?? "no cache");
 * ```
 */
export async function underCacheLock<T>(
  dir: string | undefined,
  { deadline, log }: Pick<Settings, "deadline" | "log">,
  work: (dir: string | undefined) => Promise<T>,
): Promise<T> {
  if (!dir) return await work(undefined);
  let locked = false;
  try {
    return await withCacheLock(dir, deadline.signal, () => {
      locked = true;
      return work(dir);
    });
  } catch (e) {
    if (locked) throw e;
    if (deadline.signal.aborted) throw deadlineError("cache");
    log.warn("cache", `cannot lock ${dir} (${cacheProblem(e)}); answering without caching`);
    return await work(undefined);
  }
}
