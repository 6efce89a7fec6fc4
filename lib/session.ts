/**
 * The session: a session key and the security token the auth service bound to it, which together
 * sign the requests for docker tokens. One function, {@linkcode openSession}, owns it: it reuses
 * the cached session while it is for this instance certificate and usable, else federates with a
 * new key (the spare made ahead of use when there is one, so that no RSA key is generated while
 * kubelet waits), caches the result, and renews it when OCIR refuses it.
 *
 * @module
 */

import {
  clearTokens,
  readSession,
  takeSpareKey,
  withCacheLock,
  writeQuietly,
  writeSession,
  writeSpareKey,
} from "./cache.ts";
import { federate, federationUrl, generateSessionKey } from "./federation.ts";
import type { Deadline } from "./deadline.ts";
import type { InstanceIdentity } from "./identity.ts";
import type { Logger } from "./log.ts";

/** A usable session: the security token, its private key and its expiry (epoch seconds). */
export interface Session {
  token: string;
  privateKey: CryptoKey;
  expiresAt: number;
}

/** What federating needs besides the identity. */
export interface SessionSettings {
  /** Federation endpoint override (`OCI_SDK_AUTH_CLIENT_REGION_URL`). */
  federationEndpoint?: string;
  deadline: Deadline;
  log: Logger;
}

/** The session of one invocation, opened before the identity is known. */
export interface OpenSession {
  /** The session for `identity`: the cached one if still good for it, else a new federation. */
  get(identity: InstanceIdentity): Promise<Session>;
  /** A new federation, when the session `get` gave was refused. */
  renew(identity: InstanceIdentity): Promise<Session>;
  /** Whether `get` reused a cached session (only a reused one is worth renewing). */
  readonly reused: boolean;
}

const RSA = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const;

/** The spare key if one is waiting (it is then used up), else a new one. */
async function sessionKey(dir: string | undefined, log: Logger): Promise<CryptoKeyPair> {
  const spare = dir ? await takeSpareKey(dir) : undefined;
  if (!spare) return await generateSessionKey();
  log.debug("federation", "using the session key made ahead of use");
  const [privateKey, publicKey] = await Promise.all([
    crypto.subtle.importKey("pkcs8", Uint8Array.fromBase64(spare.privateKey), RSA, true, ["sign"]),
    crypto.subtle.importKey("spki", Uint8Array.fromBase64(spare.publicKey), RSA, true, ["verify"]),
  ]);
  return { privateKey, publicKey };
}

/**
 * Makes a spare session key and stores it beside the cached session, for the next federation.
 * Run it off kubelet's path: RSA-2048 generation takes 150–350 ms of CPU. The key is made
 * outside the cache lock and written holding it (waiting at most until `signal` aborts).
 *
 * @example
 * ```ts
 * await makeSpareKey("/var/lib/oke-credential-provider", AbortSignal.timeout(45_000));
 * ```
 */
export async function makeSpareKey(dir: string, signal: AbortSignal): Promise<void> {
  const keys = await generateSessionKey();
  const [pkcs8, spki] = await Promise.all([
    crypto.subtle.exportKey("pkcs8", keys.privateKey),
    crypto.subtle.exportKey("spki", keys.publicKey),
  ]);
  const spare = {
    privateKey: new Uint8Array(pkcs8).toBase64(),
    publicKey: new Uint8Array(spki).toBase64(),
  };
  await withCacheLock(dir, signal, () => writeSpareKey(dir, spare));
}

/** Federates with `keys` and caches the session. */
async function federateWith(
  identity: InstanceIdentity,
  keys: Promise<CryptoKeyPair>,
  dir: string | undefined,
  settings: SessionSettings,
): Promise<Session> {
  const { deadline, log } = settings;
  const pair = await keys;
  const url = federationUrl(identity.region, settings.federationEndpoint);
  const obtainedAt = Date.now() / 1000;
  const st = await federate(identity, pair, { url, deadline, log });
  log.info(
    "federation",
    `security token valid until ${new Date(st.expiresAt * 1000).toISOString()}`,
    url.host,
  );
  if (dir) {
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    const life = st.expiresAt - st.issuedAt;
    await writeQuietly(log, "security token", () =>
      writeSession(dir, {
        token: st.token,
        obtainedAt,
        issuedAt: st.issuedAt,
        expiresAt: st.expiresAt,
        // No refresh point: a session is reused for as long as it is usable (lib/freshness.ts).
        refreshAt: obtainedAt + life,
        fingerprint: identity.fingerprint,
        tenancy: identity.tenancy,
        privateKey: pkcs8.toBase64(),
      }));
  }
  return { token: st.token, privateKey: pair.privateKey, expiresAt: st.expiresAt };
}

/**
 * Opens the session of one invocation. Call it before asking IMDS for the identity: when no
 * session is cached, the session key (a spare, or a new one on a worker thread) is readied while
 * IMDS answers. Call it holding the cache lock, so that concurrent invocations federate once.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import type { InstanceIdentity } from "./identity.ts";
 * import { createLogger } from "./log.ts";
 *
 * declare const identity: InstanceIdentity; // from IMDS
 * const session = await openSession("/var/lib/oke-credential-provider", {
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * const { token, privateKey } = await session.get(identity);
 * ```
 */
export async function openSession(
  dir: string | undefined,
  settings: SessionSettings,
): Promise<OpenSession> {
  const { log } = settings;
  let saved = dir ? await readSession(dir) : undefined;
  const key = saved ? undefined : sessionKey(dir, log);
  // A failure of a key nobody awaits (the session turned out to be cached) is not unhandled.
  key?.catch(() => {});
  let reused = false;
  return {
    get reused() {
      return reused;
    },
    async get(identity) {
      if (
        dir && saved &&
        (saved.fingerprint !== identity.fingerprint || saved.tenancy !== identity.tenancy)
      ) {
        log.info("cache", "the instance certificate changed: dropping cached tokens");
        await clearTokens(dir);
        saved = undefined;
      }
      if (!saved) return await federateWith(identity, key ?? sessionKey(dir, log), dir, settings);
      log.debug("cache", "reusing the cached security token");
      reused = true;
      const privateKey = await crypto.subtle.importKey(
        "pkcs8",
        Uint8Array.fromBase64(saved.privateKey),
        RSA,
        false,
        ["sign"],
      );
      return { token: saved.token, privateKey, expiresAt: saved.expiresAt };
    },
    async renew(identity) {
      reused = false;
      return await federateWith(identity, sessionKey(dir, log), dir, settings);
    },
  };
}
