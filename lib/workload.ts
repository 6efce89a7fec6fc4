/**
 * Per-workload pull identity (KEP-4412): a docker token for the pod's service account, never the
 * node's. Loaded only when kubelet sent a service-account token and the account opted in. The
 * token is decoded (never verified: the exchange does that) for its expiry and its service
 * account, which key the cache; it is never written anywhere nor logged. No npm module here or
 * below (jose included): Deno sets up npm resolution at start for any npm import the graph
 * reaches, dynamic imports included, which cost every warm call ~1.5 ms (measured). Every failure names
 * the service account, the step and the fix; nothing falls back to the node's identity.
 *
 * @module
 */

import { readJson, writeFileAtomically, writeQuietly } from "./cache.ts";
import { underCacheLock, usableCacheDir } from "./credentials.ts";
import { PluginError } from "./errors.ts";
import type { Deadline } from "./deadline.ts";
import { margin } from "./freshness.ts";
import { instanceIdentity } from "./identity.ts";
import { type OcirHost, trustedRegistry } from "./image.ts";
import { fetchInstanceDocuments } from "./imds.ts";
import { PULL_IDENTITY_ANNOTATION } from "./kubelet.ts";
import type { Logger } from "./log.ts";
import { fetchDockerToken } from "./ocir.ts";
import { DEFAULT_CLUSTER_CA, type Options } from "./options.ts";
import { proxymuxSession, type WorkloadSession } from "./proxymux.ts";
import { openSession } from "./session.ts";
import { jwtClaims } from "./token.ts";
import { exchangeAtIdentityDomain } from "./token_exchange.ts";

const STEP = "workload identity";

/** The service account a token speaks for, from its `kubernetes.io` claims. */
export interface ServiceAccountRef {
  namespace: string;
  name: string;
  uid: string;
  /** The token's expiry, epoch seconds. */
  expiresAt: number;
}

// DNS-1123 names (namespaces and service accounts) and UIDs: safe in a file name as they are.
const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const UID = /^[0-9a-fA-F-]{1,64}$/;

/**
 * Reads a service-account token's service account and expiry, and refuses an expired token
 * without calling anyone.
 *
 * @example
 * ```ts
 * declare const token: string; // kubelet's serviceAccountToken
 * serviceAccountOf(token).namespace; // e.g. "team-a"
 * ```
 */
export function serviceAccountOf(token: string, now = Date.now() / 1000): ServiceAccountRef {
  const bad = (why: string) =>
    new PluginError(STEP, "BAD_INPUT", `the service-account token from kubelet ${why}`);
  const claims = jwtClaims(token);
  if (!claims) throw bad("is not a JWT");
  const k = claims["kubernetes.io"] as
    | { namespace?: unknown; serviceaccount?: { name?: unknown; uid?: unknown } }
    | undefined;
  const namespace = k?.namespace, name = k?.serviceaccount?.name, uid = k?.serviceaccount?.uid;
  if (
    typeof namespace !== "string" || !NAME.test(namespace) || typeof name !== "string" ||
    !NAME.test(name) || typeof uid !== "string" || !UID.test(uid)
  ) {
    throw bad("has no kubernetes.io namespace, service account name and uid");
  }
  const exp = claims.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp)) {
    throw bad(`of ${namespace}/${name} has no expiry (exp)`);
  }
  if (exp <= now) {
    throw new PluginError(
      STEP,
      "BAD_INPUT",
      `service account ${namespace}/${name}: the token kubelet sent expired at ${
        new Date(exp * 1000).toISOString()
      }; not exchanged`,
    );
  }
  return { namespace, name, uid, expiresAt: exp };
}

/** A per-workload docker token as cached for one service account and registry host. */
export interface CachedWorkloadToken {
  host: string;
  namespace: string;
  name: string;
  uid: string;
  token: string;
  refreshAt: number;
  expiresAt: number;
  /** When the session token it was obtained with expires. */
  sessionExpiresAt: number;
}

/**
 * The cache file name of a service account's docker token for a host.
 *
 * @example
 * ```ts
 * const sa = { namespace: "team-a", name: "puller", uid: "1b2c", expiresAt: 0 };
 * workloadTokenName(sa, "iad.ocir.io"); // "workload-team-a_puller_1b2c-iad.ocir.io.json"
 * ```
 */
export function workloadTokenName(sa: ServiceAccountRef, host: string): string {
  return `workload-${sa.namespace}_${sa.name}_${sa.uid}-${host}.json`;
}

/**
 * The cached docker token of exactly this service account (namespace, name and uid) and host,
 * if still worth using.
 *
 * @example
 * ```ts
 * declare const sa: ServiceAccountRef;
 * const cached = await readWorkloadToken("/var/lib/oke-credential-provider", sa, "iad.ocir.io");
 * ```
 */
export async function readWorkloadToken(
  dir: string,
  sa: ServiceAccountRef,
  host: string,
  at = Date.now() / 1000,
): Promise<CachedWorkloadToken | undefined> {
  const v = await readJson(dir, workloadTokenName(sa, host));
  const time = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  if (
    !v || v.host !== host || v.namespace !== sa.namespace || v.name !== sa.name ||
    v.uid !== sa.uid || typeof v.token !== "string" || v.token === "" || !time(v.refreshAt) ||
    !time(v.expiresAt) || !time(v.sessionExpiresAt) || (v.refreshAt as number) <= at
  ) return undefined;
  return v as unknown as CachedWorkloadToken;
}

/**
 * Seconds kubelet may keep the answer: at most half the shorter remaining life of the session
 * token and the docker token, and never past our own refresh time.
 *
 * @example
 * ```ts
 * cacheSeconds({ refreshAt: 3300, expiresAt: 3600, sessionExpiresAt: 1200 } as CachedWorkloadToken, 0); // 600
 * ```
 */
export function cacheSeconds(entry: CachedWorkloadToken, now = Date.now() / 1000): number {
  const half = (Math.min(entry.expiresAt, entry.sessionExpiresAt) - now) / 2;
  return Math.max(0, Math.min(entry.refreshAt - now, half));
}

// A session token whose expiry cannot be read (they are opaque) is assumed to live this long:
// less than any OCI session token (UPST: up to 60 min).
const UNKNOWN_SESSION_SECONDS = 15 * 60;

/** The session token's expiry when it is a JWT with a numeric `exp`, else a safe guess. */
function sessionExpiry(token: string, now: number): number {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === "number" && Number.isFinite(exp) ? exp : now + UNKNOWN_SESSION_SECONDS;
}

/** The error, reworded to name the service account and the fix. */
function named(e: unknown, sa: ServiceAccountRef, options: WorkloadSettings["options"]): unknown {
  if (!(e instanceof PluginError)) return e;
  const who = `${sa.namespace}/${sa.name}`;
  if (e.reason.startsWith(`service account ${who}`)) return e;
  let hint = e.hint;
  if (e.step === "OCIR token" && (e.status === 401 || e.status === 403)) {
    hint = options.workloadIdentity === "oke"
      ? `no policy lets this workload read the repository: "Allow any-user to read repos in compartment <c> where all {request.principal.type = 'workload', request.principal.namespace = '${sa.namespace}', request.principal.service_account = '${sa.name}', request.principal.cluster_id = '<cluster ocid>'}"`
      : `no policy lets the federated principal of ${who} read the repository (see README "Per-workload identity")`;
  }
  return new PluginError(e.step, e.code, `service account ${who}: ${e.reason}`, {
    host: e.host,
    status: e.status,
    hint,
    cause: e.cause,
  });
}

/** The per-workload flags (unset ones take their defaults). */
export type WorkloadFlags = Pick<
  Options,
  "workloadIdentity" | "proxymuxUrl" | "clusterCa" | "identityDomainUrl" | "federationTokenType"
>;

/**
 * Asks the one owner of host trust ({@linkcode trustedRegistry}) before any token is sent. A
 * host of a known realm needs nothing else; one of another realm (a dedicated region) must be in
 * the node's own, which only IMDS tells.
 */
async function assertTrusted(registry: OcirHost, { options, deadline, log }: WorkloadSettings) {
  const nodeRealm = registry.knownRealm ? "" : (await instanceIdentity(
    await fetchInstanceDocuments({ baseUrls: options.imdsBaseUrls, deadline, log }),
  )).region.realmDomain;
  trustedRegistry(registry.host, nodeRealm, "image");
}

/** What the exchange needs besides the token. */
export interface WorkloadSettings {
  options:
    & Partial<WorkloadFlags>
    & Pick<Options, "cacheDir" | "imdsBaseUrls" | "federationEndpoint">;
  deadline: Deadline;
  log: Logger;
}

/** Runs the configured exchange for a session token. */
async function exchange(
  token: string,
  sa: ServiceAccountRef,
  dir: string | undefined,
  { options, deadline, log }: WorkloadSettings,
): Promise<WorkloadSession> {
  const who = `${sa.namespace}/${sa.name}`;
  const missing = (flag: string) =>
    new PluginError(
      STEP,
      "BAD_INPUT",
      `service account ${who}: --workload-identity ${options.workloadIdentity} needs ${flag}`,
    );
  if (options.workloadIdentity === "oke") {
    if (!options.proxymuxUrl) throw missing("--proxymux-url");
    return await proxymuxSession(token, {
      url: new URL(options.proxymuxUrl),
      clusterCa: options.clusterCa ?? DEFAULT_CLUSTER_CA,
      deadline,
      log,
    });
  }
  if (!options.identityDomainUrl) throw missing("--identity-domain-url");
  // The node's own session (cached, else a federation) signs the exchange: no secret on the node.
  const session = await openSession(dir, {
    federationEndpoint: options.federationEndpoint,
    deadline,
    log,
  });
  const node = await session.get(
    await instanceIdentity(
      await fetchInstanceDocuments({ baseUrls: options.imdsBaseUrls, deadline, log }),
    ),
  );
  return await exchangeAtIdentityDomain(token, {
    identityDomainUrl: options.identityDomainUrl,
    tokenType: options.federationTokenType ?? "upst",
    node,
    deadline,
    log,
  });
}

/**
 * A docker token for the request's service account on `registry`: cached for that exact account,
 * else obtained through the configured exchange and cached. Returns the token and the seconds
 * kubelet may keep it.
 *
 * @example
 * ```ts
 * import { ocirHost } from "./image.ts";
 *
 * declare const serviceAccountToken: string; // from kubelet's request
 * declare const settings: WorkloadSettings;
 * const registry = ocirHost("iad.ocir.io")!;
 * const { token, seconds } = await workloadDockerToken(serviceAccountToken, registry, settings);
 * ```
 */
export async function workloadDockerToken(
  token: string,
  registry: OcirHost,
  settings: WorkloadSettings,
): Promise<{ token: string; seconds: number }> {
  const { options, deadline, log } = settings;
  const sa = serviceAccountOf(token);
  const who = `${sa.namespace}/${sa.name}`;
  if (!options.workloadIdentity) {
    throw new PluginError(
      STEP,
      "BAD_INPUT",
      `service account ${who} opted in to its own pull identity (${PULL_IDENTITY_ANNOTATION}: workload) but this plugin has no --workload-identity; it is not given the node's`,
      { hint: "set --workload-identity oke|federation in the kubelet config's args or env" },
    );
  }
  try {
    const dir = await usableCacheDir(settingsOf(settings));
    const cached = dir ? await readWorkloadToken(dir, sa, registry.host) : undefined;
    if (cached) return { token: cached.token, seconds: cacheSeconds(cached) };
    return await underCacheLock(dir, settings, async (locked) => {
      const again = locked ? await readWorkloadToken(locked, sa, registry.host) : undefined;
      if (again) return { token: again.token, seconds: cacheSeconds(again) };
      await assertTrusted(registry, settings);
      const session = await exchange(token, sa, locked, settings);
      const docker = await fetchDockerToken(registry.host, {
        securityToken: session.token,
        sessionKey: session.privateKey,
        deadline,
        log,
      });
      const entry: CachedWorkloadToken = {
        host: registry.host,
        namespace: sa.namespace,
        name: sa.name,
        uid: sa.uid,
        token: docker.token,
        // Reused until shortly before it expires (kubelet calls again at half-life anyway).
        refreshAt: docker.expiresAt - margin(docker.expiresAt - docker.issuedAt),
        expiresAt: docker.expiresAt,
        sessionExpiresAt: sessionExpiry(session.token, docker.issuedAt),
      };
      if (locked) {
        await writeQuietly(
          log,
          "workload docker token",
          () =>
            writeFileAtomically(
              `${locked}/${workloadTokenName(sa, registry.host)}`,
              JSON.stringify(entry),
            ),
        );
      }
      log.info(STEP, `docker token for ${who} via ${options.workloadIdentity}`, registry.host);
      return { token: entry.token, seconds: cacheSeconds(entry) };
    });
  } catch (e) {
    throw named(e, sa, options);
  }
}

function settingsOf({ options, deadline, log }: WorkloadSettings) {
  return {
    cacheDir: options.cacheDir,
    imdsBaseUrls: options.imdsBaseUrls,
    federationEndpoint: options.federationEndpoint,
    deadline,
    log,
  };
}
