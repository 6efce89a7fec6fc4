/**
 * Filling the cache off kubelet's path. `refresh` is the detached process a stale call starts
 * (lib/refresh.ts): it replaces one host's docker token unless another process already did,
 * records the outcome for the backoff and `doctor`, and leaves a spare session key for the next
 * federation. `warm` is run by cloud-init at boot: it caches tokens for the registries given, by
 * default every OCIR host name of the node's own region, so that kubelet's first pull is warm.
 *
 * @module
 */

import { type CachedDockerToken, hasSpareKey, prepareCacheDir, readDockerToken } from "./cache.ts";
import { obtainDockerToken, type Settings } from "./credentials.ts";
import { describe, PluginError } from "./errors.ts";
import type { Deadline } from "./deadline.ts";
import { instanceIdentity } from "./identity.ts";
import { type OcirHost, ocirHost, regionRegistryHosts } from "./image.ts";
import { fetchInstanceDocuments } from "./imds.ts";
import type { Logger } from "./log.ts";
import type { Options } from "./options.ts";
import { readRefreshRecord, recordRefresh, releaseRefreshClaim } from "./refresh_record.ts";
import { makeSpareKey } from "./session.ts";
import { failureOf, type OutcomeReport, recordOutcome } from "./status.ts";

/** A token obtained off kubelet's wait (a background refresh, `warm`), for `status`. */
const refreshed = (entry: CachedDockerToken): OutcomeReport => ({
  outcome: "refreshed",
  token: { obtainedAt: entry.obtainedAt, refreshAt: entry.refreshAt, expiresAt: entry.expiresAt },
  ms: performance.now(),
});

/** Records an outcome for `status`, unless recording is off. */
async function recordFor(options: Options, host: string, report: OutcomeReport): Promise<void> {
  if (options.record) await recordOutcome(options.cacheDir, host, report);
}

/** The life assumed for backoff when no token was ever cached: OCIR's hour. */
const DEFAULT_LIFE = 3600;

/** What `warm` and `refresh` run with, as doctor does. */
export interface CommandContext {
  deadline: Deadline;
  log: Logger;
  /** Writes one line of output. */
  print: (line: string) => void;
}

const settingsOf = (options: Options, { deadline, log }: CommandContext): Settings => ({
  cacheDir: options.cacheDir,
  imdsBaseUrls: options.imdsBaseUrls,
  federationEndpoint: options.federationEndpoint,
  deadline,
  log,
});

function registry(host: string): OcirHost {
  const found = ocirHost(host);
  if (!found) {
    throw new PluginError("arguments", "BAD_INPUT", `--registry ${host} is not an OCIR host`);
  }
  return found;
}

/** Makes a spare session key unless one is waiting; a failure costs only the spare. */
async function ensureSpareKey(dir: string, { deadline, log }: CommandContext): Promise<void> {
  try {
    await prepareCacheDir(dir); // never into a directory refused as unsafe
    if (!await hasSpareKey(dir)) await makeSpareKey(dir, deadline.signal);
  } catch (e) {
    log.warn("cache", `could not make a spare session key (${describe(e)})`);
  }
}

/**
 * `refresh [--registry HOST]`: the background refresh (started by lib/refresh.ts, which holds
 * the claim this releases). Returns the exit status; nobody reads it but the record.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { parseOptions } from "./options.ts";
 *
 * const options = await parseOptions(["refresh", "--registry", "iad.ocir.io"]);
 * const log = createLogger("warn");
 * const status = await refresh(options, { deadline: deadline(45), log, print: console.log });
 * ```
 */
export async function refresh(options: Options, context: CommandContext): Promise<number> {
  const { log } = context;
  const dir = options.cacheDir;
  const host = options.registries[0];
  try {
    // Nothing (record, key, claim) is written to or removed from a directory refused as unsafe.
    await prepareCacheDir(dir);
  } catch (e) {
    log.failure(e);
    return 1;
  }
  let status = 0;
  if (host) {
    try {
      const before = await readDockerToken(dir, host);
      const life = before ? before.expiresAt - before.issuedAt : DEFAULT_LIFE;
      try {
        const entry = await obtainDockerToken(
          registry(host),
          settingsOf(options, context),
          "fresh",
        );
        await recordRefresh(dir, host, entry.expiresAt - entry.issuedAt, context.deadline.signal);
        await recordFor(options, host, refreshed(entry));
      } catch (e) {
        await recordRefresh(dir, host, life, context.deadline.signal, describe(e));
        const backoffUntil = (await readRefreshRecord(dir, host))?.retryAt;
        await recordFor(options, host, {
          outcome: "refresh-failed",
          error: failureOf(e, "cache"),
          backoffUntil,
          ms: performance.now(),
        });
        throw e;
      }
    } catch (e) {
      log.failure(e);
      status = 1;
    } finally {
      await releaseRefreshClaim(dir, host);
    }
  }
  await ensureSpareKey(dir, context);
  if (!host) await releaseRefreshClaim(dir, "spare-key");
  return status;
}

/**
 * `warm [--registry HOST]…`: caches a docker token for each host (default: the region's OCIR
 * hosts, from IMDS) and a spare session key; prints one line per host. Exit status 1 if any
 * host failed.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { parseOptions } from "./options.ts";
 *
 * const options = await parseOptions(["warm"]);
 * const log = createLogger("warn");
 * const status = await warm(options, { deadline: deadline(45), log, print: console.log });
 * ```
 */
export async function warm(options: Options, context: CommandContext): Promise<number> {
  const { log, print } = context;
  const settings = settingsOf(options, context);
  let hosts: OcirHost[];
  try {
    hosts = options.registries.map(registry);
    if (hosts.length === 0) {
      const docs = await fetchInstanceDocuments({
        baseUrls: options.imdsBaseUrls,
        deadline: settings.deadline,
        log,
      });
      hosts = regionRegistryHosts((await instanceIdentity(docs)).region).map(registry);
    }
  } catch (e) {
    log.failure(e);
    return 1;
  }
  let failed = false;
  for (const host of hosts) {
    try {
      // An operator's explicit warm-up: a token past its refresh point is replaced too.
      const entry = await obtainDockerToken(host, settings, "fresh");
      await recordFor(options, host.host, refreshed(entry));
      const iso = (s: number) => new Date(s * 1000).toISOString();
      print(
        `✓ ${host.host}: token cached; refresh from ${iso(entry.refreshAt)}, valid until ${
          iso(entry.expiresAt)
        }`,
      );
    } catch (e) {
      failed = true;
      print(`✗ ${host.host}: ${describe(e)}`);
    }
  }
  await ensureSpareKey(options.cacheDir, context);
  return failed ? 1 : 0;
}
