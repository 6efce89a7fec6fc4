/**
 * The cold path: a docker token for a registry host when the cache has none. Under the cache
 * lock (so that of many processes started together only one talks to IMDS and the auth service)
 * it reuses the cached session when the instance certificate is unchanged, else generates a
 * session key while IMDS answers and federates; then it asks the registry host for a token and
 * caches it.
 *
 * @module
 */

import {
  type CachedDockerToken,
  type CachedSession,
  clearTokens,
  lockCache,
  prepareCacheDir,
  readDockerToken,
  readSession,
  refreshTime,
  removeTempFiles,
  writeDockerToken,
  writeSession,
} from "./cache.ts";
import { describe, PluginError } from "./errors.ts";
import { federate, federationUrl, generateSessionKey } from "./federation.ts";
import { type Deadline, deadlineError } from "./deadline.ts";
import { type InstanceIdentity, instanceIdentity } from "./identity.ts";
import { type ImageReference, type OcirHost, trustedRegistry } from "./image.ts";
import { fetchInstanceDocuments } from "./imds.ts";
import type { Logger } from "./log.ts";
import { fetchDockerToken, policyHint } from "./ocir.ts";
import { checkPull } from "./pull_check.ts";
import type { IssuedToken } from "./token.ts";

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
  checkPull?: ImageReference;
}

/** How long a token that cannot read the image is reused: long enough to spare a storm, short
 * enough that a newly added IAM policy applies within minutes (a token never gains a permission). */
export const DENIED_TOKEN_SECONDS = 120;

/** A usable session: the security token and its private key. */
interface Session {
  token: string;
  privateKey: CryptoKey;
}

async function restoreSession(cached: CachedSession): Promise<Session> {
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    Uint8Array.fromBase64(cached.privateKey),
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return { token: cached.token, privateKey };
}

/** Why the cache cannot be used, for the warning: the plugin's words where it refused it. */
function cacheProblem(e: unknown): string {
  // The released binary may write only where scripts/build.ts allows; Deno's own message would
  // advise a flag that a compiled binary cannot take.
  if (e instanceof Deno.errors.NotCapable) {
    return "it is outside the paths this binary may write (/var/lib/oke-credential-provider); use the default --cache-dir or mount storage there";
  }
  return e instanceof PluginError && e.step === "cache" ? e.reason : describe(e);
}

/** Opens the cache, or explains on stderr why the plugin goes on without one. */
async function usableCacheDir(settings: Settings): Promise<string | undefined> {
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

/**
 * Takes the cache lock. A lock that cannot be taken (its path a directory or a symbolic link)
 * costs only the cache, never the answer; running out of time waiting for it is the deadline's.
 */
async function lockOrNoCache(
  dir: string,
  { deadline, log }: Settings,
): Promise<{ release(): void } | undefined> {
  try {
    return await lockCache(dir, deadline.signal);
  } catch (e) {
    if (deadline.signal.aborted) throw deadlineError("cache");
    log.warn("cache", `cannot lock ${dir} (${cacheProblem(e)}); answering without caching`);
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

/** Writes to the cache; a failure (disk full, read-only) costs only caching, never the answer. */
async function store(settings: Settings, what: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (e) {
    settings.log.warn(
      "cache",
      `could not cache the ${what} (${describe(e)}); the next invocation will fetch again`,
    );
  }
}

/** Federates with a new session key and caches the session. */
async function newSession(
  identity: InstanceIdentity,
  sessionKey: Promise<CryptoKeyPair>,
  dir: string | undefined,
  settings: Settings,
): Promise<Session> {
  const { deadline, log } = settings;
  const keys = await sessionKey;
  const url = federationUrl(identity.region, settings.federationEndpoint);
  const st = await federate(identity, keys, { url, deadline, log });
  log.info(
    "federation",
    `security token valid until ${new Date(st.expiresAt * 1000).toISOString()}`,
    url.host,
  );
  if (dir) {
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    await store(settings, "security token", () =>
      writeSession(dir, {
        token: st.token,
        refreshAt: refreshTime(st.issuedAt, st.expiresAt),
        expiresAt: st.expiresAt,
        fingerprint: identity.fingerprint,
        tenancy: identity.tenancy,
        privateKey: pkcs8.toBase64(),
      }));
  }
  return { token: st.token, privateKey: keys.privateKey };
}

/**
 * Obtains a docker token for an OCIR host: cached by another process meanwhile, or made now.
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
): Promise<CachedDockerToken> {
  const { log, deadline } = settings;
  let dir = await usableCacheDir(settings);
  const lock = dir ? await lockOrNoCache(dir, settings) : undefined;
  if (!lock) dir = undefined;
  try {
    if (dir) await removeTempFiles(dir);
    const cached = dir ? await readDockerToken(dir, registry.host) : undefined;
    if (cached) {
      log.debug("cache", "another invocation cached a token meanwhile", registry.host);
      return cached;
    }
    let saved = dir ? await readSession(dir) : undefined;
    // Key generation (150–300 ms of CPU, on a worker thread) starts before the IMDS round trips so
    // that they overlap, and only when no session is cached; BENCHMARKS.md shows what remains.
    let sessionKey = saved ? undefined : generateSessionKey();
    const identity = await instanceIdentity(
      await fetchInstanceDocuments({ baseUrls: settings.imdsBaseUrls, deadline, log }),
    );
    trustedRegistry(registry.host, identity.region.realmDomain, "image");
    if (
      dir && saved &&
      (saved.fingerprint !== identity.fingerprint || saved.tenancy !== identity.tenancy)
    ) {
      log.info("cache", "the instance certificate changed: dropping cached tokens");
      await clearTokens(dir);
      saved = undefined;
      sessionKey = generateSessionKey();
    }
    if (saved) log.debug("cache", "reusing the cached security token");
    let session = saved
      ? await restoreSession(saved)
      : await newSession(identity, sessionKey!, dir, settings);
    const ask = (s: Session) =>
      fetchDockerToken(registry.host, {
        securityToken: s.token,
        sessionKey: s.privateKey,
        deadline,
        log,
      });
    let docker: IssuedToken;
    try {
      docker = await ask(session);
    } catch (e) {
      // A cached security token can be refused before its expiry (revoked, the auth service's
      // keys rotated): one fresh federation tells a dead token from a missing policy.
      if (!saved || !(e instanceof PluginError && e.status === 401)) throw e;
      log.info(
        "OCIR token",
        "the cached security token was refused: federating again",
        registry.host,
      );
      session = await newSession(identity, generateSessionKey(), dir, settings);
      docker = await ask(session);
    }
    const entry: CachedDockerToken = {
      host: registry.host,
      token: docker.token,
      refreshAt: refreshTime(docker.issuedAt, docker.expiresAt),
      expiresAt: docker.expiresAt,
      fingerprint: identity.fingerprint,
      tenancy: identity.tenancy,
    };
    if (settings.checkPull && !await canPull(settings.checkPull, entry, identity, settings)) {
      entry.refreshAt = Math.min(entry.refreshAt, docker.issuedAt + DENIED_TOKEN_SECONDS);
    }
    if (dir) await store(settings, "docker token", () => writeDockerToken(dir, entry));
    log.info(
      "OCIR token",
      `docker token valid until ${new Date(docker.expiresAt * 1000).toISOString()}`,
      registry.host,
    );
    return entry;
  } finally {
    lock?.release();
  }
}
