/**
 * The plugin as functions: {@linkcode run} is the whole command (arguments, the request on
 * stdin, the answer on stdout, logs on stderr, the exit status) and {@linkcode provide} answers
 * one request. mod.ts calls `run` with the process's own streams; tests call both in-process.
 *
 * This module is on the warm path (a cached token): it loads only what answering from the cache
 * needs; the cold path (lib/credentials.ts) and doctor (lib/doctor.ts) are imported on demand.
 *
 * @module
 */

import { type CachedDockerToken, hasSpareKey, readDockerToken } from "./cache.ts";
import { type Deadline, deadline, deadlineError, watchdog } from "./deadline.ts";
import type { Step } from "./errors.ts";
import { freshness } from "./freshness.ts";
import { ocirHost, parseImage } from "./image.ts";
import {
  type CredentialProviderRequest,
  formatResponse,
  pullIdentity,
  readRequest,
  type RequestSource,
} from "./kubelet.ts";
import { createLogger, type Logger } from "./log.ts";
import { type Options, parseOptions, USAGE } from "./options.ts";
import { failureOf, type OutcomeReport, recordOutcome } from "./status.ts";
import { VERSION } from "./version.ts";
import type { WorkloadFlags } from "./workload.ts";

/**
 * How {@linkcode provide} answers: the settings it uses, the log, the deadline. The per-workload
 * settings matter only for requests with a service-account token.
 */
export interface ProvideOptions
  extends
    Pick<Options, "cacheDir" | "imdsBaseUrls" | "federationEndpoint" | "checkPull" | "record">,
    Partial<WorkloadFlags & Pick<Options, "nodeIdentity">> {
  log: Logger;
  /** The invocation's deadline, asked for when a step needs it. */
  deadline: () => Deadline;
  /** Told each step as it starts, for the watchdog's message. */
  onStep?: (step: Step) => void;
  /**
   * Asked to refresh `host`'s token (stale `entry`) in the background, or with no host to make a
   * spare session key; run() starts it after writing the answer. In-process callers leave it out.
   */
  background?: (host: string | undefined, entry: CachedDockerToken) => void;
}

/**
 * Answers one request: the response JSON, with a docker token from the cache or made now, or
 * with no credentials for an image that is not on OCIR. With `record`, what became of the call
 * (from the cache, cold, failed) goes into the host's record for `status` (lib/status.ts).
 *
 * @example
 * ```ts
 * import { DEFAULT_CACHE_DIR } from "./cache.ts";
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { DEFAULT_IMDS_BASES } from "./options.ts";
 *
 * const response = await provide(
 *   { apiVersion: "credentialprovider.kubelet.k8s.io/v1", image: "docker.io/library/nginx:1" },
 *   {
 *     cacheDir: DEFAULT_CACHE_DIR,
 *     imdsBaseUrls: DEFAULT_IMDS_BASES,
 *     checkPull: false,
 *     record: false,
 *     log: createLogger("warn"),
 *     deadline: () => deadline(45),
 *   },
 * );
 * JSON.parse(response).auth; // {}
 * ```
 */
export async function provide(
  request: CredentialProviderRequest,
  options: ProvideOptions,
): Promise<string> {
  const { log } = options;
  options.onStep?.("image");
  const image = parseImage(request.image);
  const registry = ocirHost(image.registry);
  if (!registry) {
    log.warn(
      "image",
      `${image.registry} is not an OCIR registry host: answering with no credentials`,
    );
    return formatResponse(request.apiVersion, null, 0);
  }
  const identity = pullIdentity(request, options.nodeIdentity ?? "allow");
  if (identity === "none") {
    log.info(
      "request",
      "the service account did not opt in to workload identity and --node-identity is deny: answering with no credentials",
    );
    return formatResponse(request.apiVersion, null, 0);
  }
  if (identity === "workload") {
    // Loaded only here: the node path's imports and speed stay as they were.
    options.onStep?.("workload identity");
    const d = options.deadline();
    const { workloadDockerToken } = await import("./workload.ts");
    const answer = await workloadDockerToken(request.serviceAccountToken!, registry, {
      options,
      deadline: d,
      log,
    });
    return formatResponse(
      request.apiVersion,
      { host: image.registry, password: answer.token },
      answer.seconds,
    );
  }
  options.onStep?.("cache");
  const record = async (report: OutcomeReport) => {
    // No performance.measure here for the bench: a process's first one costs 1.3-2 ms.
    if (options.record) await recordOutcome(options.cacheDir, registry.host, report);
  };
  // The cache first: fresh or stale, the answer goes out now (lib/freshness.ts).
  const cached = await readDockerToken(options.cacheDir, registry.host);
  let entry;
  try {
    entry = cached ?? await coldPath();
  } catch (e) {
    await record({ outcome: "failed", error: failureOf(e, "cache"), ms: performance.now() });
    throw e;
  }
  const judged = freshness(entry, Date.now() / 1000);
  // Where this answer came from: fresh or stale from disk, or cold (recorded for `status`).
  const answered = cached ? judged.state : "cold";
  log.debug("cache", `answered (${answered})`, registry.host);
  // Off kubelet's wait (run() starts it after the answer is written): a stale token is refreshed,
  // and a cold call that used up the spare session key gets the next one made.
  // (Only where the token was cached: a cache directory refused as unsafe gets nothing written.)
  if (judged.state === "stale") options.background?.(registry.host, entry);
  else if (
    answered === "cold" && options.background && !await hasSpareKey(options.cacheDir) &&
    await readDockerToken(options.cacheDir, registry.host)
  ) {
    options.background(undefined, entry);
  }
  const response = formatResponse(
    request.apiVersion,
    { host: image.registry, password: entry.token },
    judged.state === "unusable" ? 0 : judged.cacheSeconds,
  );
  const { obtainedAt, refreshAt, expiresAt } = entry;
  await record({
    outcome: cached ? "cache" : "cold",
    token: { obtainedAt, refreshAt, expiresAt },
    ms: performance.now(),
  });
  return response;

  async function coldPath() {
    performance.mark("cache missed"); // read by deno task bench, with the steps' measures
    const d = options.deadline();
    const { obtainDockerToken } = await import("./credentials.ts");
    return await obtainDockerToken(registry!, {
      cacheDir: options.cacheDir,
      imdsBaseUrls: options.imdsBaseUrls,
      federationEndpoint: options.federationEndpoint,
      deadline: d,
      log,
      pullCheckImage: options.checkPull ? image : undefined,
    });
  }
}

/** What a run reads and writes. */
export interface PluginIO {
  /** Where the request comes from. */
  stdin: RequestSource;
  /** Writes one line of the answer (the response, `--help`, doctor's report). */
  stdout: (line: string) => void;
  /** Writes one log line. */
  stderr: (line: string) => void;
  /** The environment; the process's own when not given. */
  env?: (name: string) => string | undefined;
  /**
   * Ends the process. When given, a watchdog calls it with 1 a second after the deadline, for
   * what no request timeout covers (a stdin that never closes); in-process callers leave it out.
   */
  exit?: (code: number) => void;
}

/**
 * Runs the command as kubelet (or an operator) starts it, and returns its exit status.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const status = await run(["--version"], {
 *   stdin: Deno.stdin,
 *   stdout: (line) => lines.push(line),
 *   stderr: (line) => console.error(line),
 * });
 * status; // 0
 * ```
 */
export async function run(args: string[], io: PluginIO): Promise<number> {
  let log = createLogger("warn", io.stderr);
  let step: Step = "arguments";
  try {
    const options = await parseOptions(args, io.env);
    log = createLogger(options.logLevel, io.stderr);
    if (options.command === "help") return io.stdout(USAGE), 0;
    if (options.command === "version") return io.stdout(`oke-credential-provider ${VERSION}`), 0;
    // One deadline for the invocation, armed before anything is read: a stdin that stays open
    // and silent ends with it too.
    const invocation = deadline(options.timeoutSeconds);
    const limit = () => invocation;
    const exit = io.exit;
    if (exit) {
      watchdog(invocation, 1000, () => {
        log.failure(deadlineError(step));
        exit(1);
      });
    }
    if (options.command === "status") {
      const { status } = await import("./status_report.ts");
      return await status(options, io.stdout);
    }
    if (options.command === "doctor") {
      const { doctor } = await import("./doctor.ts");
      return await doctor(options, { deadline: limit(), log, print: io.stdout });
    }
    if (options.command === "warm" || options.command === "refresh") {
      const commands = await import("./warm.ts");
      return await commands[options.command](options, { deadline: limit(), log, print: io.stdout });
    }
    step = "request";
    const request = await readRequest(io.stdin);
    const onStep = (s: Step) => step = s;
    let later: { host?: string; entry: CachedDockerToken } | undefined;
    const background = io.exit
      ? (host: string | undefined, entry: CachedDockerToken) => later = { host, entry }
      : undefined;
    io.stdout(await provide(request, { ...options, log, deadline: limit, onStep, background }));
    if (later) {
      const { startRefresh } = await import("./refresh.ts");
      const { host, entry } = later;
      await startRefresh(host, entry.expiresAt - entry.issuedAt, options, log);
    }
    return 0;
  } catch (e) {
    log.failure(e);
    return 1;
  }
}
