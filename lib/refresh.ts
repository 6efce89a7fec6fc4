/**
 * The background refresh: a stale docker token is answered at once and replaced by a detached
 * process, the same program run as `refresh --registry HOST`, so that kubelet never waits for it.
 *
 * Kubelet runs the plugin with Go's os/exec, which waits for the process to exit and for its
 * stdout/stderr pipes to close, and on its timeout kills the plugin process only. So the refresh
 * gets no stdin/stdout/stderr (null, never inherited) and outlives the plugin, whose exit or kill
 * leaves it running, and its argv holds nothing secret (a host, the cache directory, the timeout
 * and the log level; kubelet's environment is inherited as it is). It is not moved to a session
 * of its own (Deno's `detached`): nothing kills the plugin's process group, and the setsid
 * makes Deno fork instead of vfork, ~1 ms more on every stale call (BENCHMARKS.md).
 *
 * Of many invocations that find the token stale, one starts the refresh: the one that creates the
 * claim file. A refresh that fails is recorded with a backoff (lib/refresh_record.ts), so that an
 * auth service that is down is not asked by every call; the record keeps the reason for `doctor`.
 * The refresh itself takes the cache lock like the cold path and writes atomically, so a refresh
 * killed at any point leaves the last good token in place.
 *
 * This module is on the stale path: it imports nothing heavy; the refresh's own work is loaded
 * in the refresh process.
 *
 * @module
 */

import { describe } from "./errors.ts";
import type { Level, Logger } from "./log.ts";
import { ENV_VARIABLES } from "./options.ts";
import {
  claimRefresh,
  readRefreshRecord,
  recordRefresh,
  releaseRefreshClaim,
} from "./refresh_record.ts";

/** What a refresh process is told. */
export interface RefreshSettings {
  cacheDir: string;
  timeoutSeconds: number;
  logLevel: Level;
}

/** How long a claim protects a refresh: its whole deadline and a little more. */
const claimLifetime = (settings: RefreshSettings) => settings.timeoutSeconds + 15;

const granted = (descriptor: Deno.PermissionDescriptor) =>
  Deno.permissions.querySync(descriptor).state === "granted";

/**
 * Under `deno run`, the permission flags that give a child what this process holds of what the
 * plugin uses: the network, its environment variables, the cache directory, its uid, running
 * itself.
 */
function heldPermissionFlags(cacheDir: string): string[] {
  const flags = ["--no-prompt"];
  if (granted({ name: "net" })) flags.push("--allow-net");
  if (granted({ name: "env" })) flags.push("--allow-env");
  else {
    const names = ENV_VARIABLES.filter((variable) => granted({ name: "env", variable }));
    if (names.length > 0) flags.push(`--allow-env=${names.join(",")}`);
  }
  for (const name of ["read", "write"] as const) {
    if (granted({ name })) flags.push(`--allow-${name}`);
    else if (granted({ name, path: cacheDir })) flags.push(`--allow-${name}=${cacheDir}`);
  }
  // The cache's owner is checked against this process's uid (lib/cache.ts); the uptime dates
  // the status record's counts since boot (lib/status_record.ts).
  if (granted({ name: "sys" })) flags.push("--allow-sys");
  else {
    const kinds = (["uid", "osUptime"] as const).filter((kind) => granted({ name: "sys", kind }));
    if (kinds.length > 0) flags.push(`--allow-sys=${kinds.join(",")}`);
  }
  if (granted({ name: "run" })) flags.push("--allow-run");
  else if (canRunItself()) flags.push(`--allow-run=${Deno.execPath()}`);
  return flags;
}

/**
 * Whether this program may start itself again, as the background refresh does. The released
 * binary may run only its installed path (scripts/build.ts); under `deno run` it needs
 * `--allow-run` of deno.
 *
 * @example
 * ```ts
 * if (!canRunItself()) console.log("stale tokens are refreshed only on the cold path");
 * ```
 */
export function canRunItself(): boolean {
  return granted({ name: "run", command: Deno.execPath() });
}

/**
 * The command line that runs this program again with `args`: the binary itself when compiled;
 * under `deno run`, deno with the same script and the permissions this process holds.
 *
 * @example
 * ```ts
 * const { command, args } = selfCommand(["refresh", "--registry", "iad.ocir.io"], "/var/lib/oke-credential-provider");
 * ```
 */
export function selfCommand(args: string[], cacheDir: string): { command: string; args: string[] } {
  if (Deno.build.standalone) return { command: Deno.execPath(), args };
  // mod.ts itself, not Deno.mainModule: whoever imported this module, the program is the plugin.
  const script = decodeURIComponent(new URL("../mod.ts", import.meta.url).pathname);
  return {
    command: Deno.execPath(),
    args: ["run", ...heldPermissionFlags(cacheDir), script, ...args],
  };
}

/**
 * The arguments of a refresh process for `host`, or of a process that only makes a spare
 * session key when `host` is undefined.
 *
 * @example
 * ```ts
 * refreshArgs("iad.ocir.io", { cacheDir: "/c", timeoutSeconds: 45, logLevel: "warn" });
 * // ["refresh", "--cache-dir", "/c", "--timeout", "45", "--log-level", "warn", "--registry", "iad.ocir.io"]
 * ```
 */
export function refreshArgs(host: string | undefined, settings: RefreshSettings): string[] {
  return [
    "refresh",
    "--cache-dir",
    settings.cacheDir,
    "--timeout",
    String(settings.timeoutSeconds),
    "--log-level",
    settings.logLevel,
    ...(host ? ["--registry", host] : []),
  ];
}

/**
 * Starts a detached refresh of `host`'s docker token, unless one is running or a failed one asks
 * to wait (the backoff). With `host` undefined, the process only makes a spare session key.
 * Returns whether a refresh was started; never throws (a refresh that cannot start is recorded).
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 *
 * const settings = { cacheDir: "/var/lib/oke-credential-provider", timeoutSeconds: 45, logLevel: "warn" as const };
 * await startRefresh("iad.ocir.io", 3600, settings, createLogger("warn"));
 * ```
 */
export async function startRefresh(
  host: string | undefined,
  life: number,
  settings: RefreshSettings,
  log: Logger,
): Promise<boolean> {
  const dir = settings.cacheDir;
  const claim = host ?? "spare-key";
  try {
    const record = host ? await readRefreshRecord(dir, host) : undefined;
    const now = Date.now() / 1000;
    // A record dated in the future says nothing: the clock stepped back since.
    if (record && !record.ok && record.at <= now && now < record.retryAt) {
      log.debug("cache", `background refresh backing off until ${iso(record.retryAt)}`, host);
      return false;
    }
    if (!await claimRefresh(dir, claim, claimLifetime(settings))) return false;
  } catch (e) {
    // Without a host this was only for a spare key, and the cache's trouble was already told.
    (host ? log.warn : log.debug)(
      "cache",
      `cannot start a background refresh (${describe(e)})`,
      host,
    );
    return false;
  }
  try {
    const { command, args } = selfCommand(refreshArgs(host, settings), dir);
    const child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    child.status.catch(() => {});
    log.debug("cache", `background refresh started (process ${child.pid})`, host);
    return true;
  } catch (e) {
    await releaseRefreshClaim(dir, claim);
    const reason = `could not start the background refresh: ${describe(e)}`;
    // Only a spare key is lost without a host; a token that cannot be refreshed is worth a warning.
    (host ? log.warn : log.debug)("cache", reason, host);
    // Briefly: kubelet has its answer but waits for this process to exit.
    const signal = AbortSignal.timeout(2000);
    if (host) await recordRefresh(dir, host, life, signal, reason).catch(() => {});
    return false;
  }
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
