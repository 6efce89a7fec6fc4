/**
 * Command line and environment → settings. Kubelet runs the plugin with the `args` and `env` of
 * its config; with no arguments at all (the usual case) `node:util` is not even loaded, which
 * keeps the warm path's start-up at the bare runtime's.
 *
 * @module
 */

import { DEFAULT_CACHE_DIR } from "./cache.ts";
import { PluginError } from "./errors.ts";
import { type Level, LEVELS } from "./log.ts";

/**
 * IMDS v2's base URLs, tried in this order; `OCI_METADATA_BASE_URL`, as in OCI's SDKs, replaces
 * both.
 */
export const DEFAULT_IMDS_BASES: readonly string[] = [
  "http://169.254.169.254/opc/v2",
  "http://[fd00:c1::a9fe:a9fe]/opc/v2",
];

function imdsBaseUrls(override: string | undefined): readonly string[] {
  return override ? [override] : DEFAULT_IMDS_BASES;
}

/** Every environment variable the plugin reads (a refresh process is given the same). */
export const ENV_VARIABLES = [
  "OKE_CREDENTIAL_PROVIDER_CACHE_DIR",
  "OKE_CREDENTIAL_PROVIDER_CHECK_PULL",
  "OKE_CREDENTIAL_PROVIDER_LOG_LEVEL",
  "OKE_CREDENTIAL_PROVIDER_RECORD",
  "OCI_METADATA_BASE_URL",
  "OCI_SDK_AUTH_CLIENT_REGION_URL",
] as const;

/** What to do, and how. */
export interface Options {
  command: "provide" | "doctor" | "status" | "warm" | "refresh" | "help" | "version";
  cacheDir: string;
  timeoutSeconds: number;
  logLevel: Level;
  /** IMDS base URLs, tried in order: `OCI_METADATA_BASE_URL`, else the IPv4 and IPv6 defaults. */
  imdsBaseUrls: readonly string[];
  federationEndpoint?: string;
  /** `doctor --image`. */
  image?: string;
  /** `warm --registry` (any number) and `refresh --registry` (at most one). */
  registries: string[];
  /** `--check-pull`: check the token can read the image; cache a token that cannot only briefly. */
  checkPull: boolean;
  /** Record each call's outcome for `status` (off with OKE_CREDENTIAL_PROVIDER_RECORD=false). */
  record: boolean;
  /** `status --json`. */
  json?: boolean;
  /** `status --prometheus FILE`. */
  prometheus?: string;
}

/** `--help` text. */
export const USAGE =
  `Usage: oke-credential-provider [flags]            (run by kubelet: request on stdin, response on stdout)
       oke-credential-provider doctor [--image REF] (what happened, then check every step now)
       oke-credential-provider status [--json] [--prometheus FILE]
                                                    (each registry's token and recorded calls)
       oke-credential-provider warm [--registry HOST]...
                                 (cache tokens ahead of kubelet's first pull, e.g. at boot;
                                  default: this region's OCIR hosts, from the metadata service)

Flags:
  --cache-dir DIR     token cache (env OKE_CREDENTIAL_PROVIDER_CACHE_DIR; default ${DEFAULT_CACHE_DIR})
  --timeout SECONDS   deadline of one invocation (default 45; kubelet allows 60)
  --log-level LEVEL   error, warn, info or debug (default warn; env OKE_CREDENTIAL_PROVIDER_LOG_LEVEL);
                      logs go to stderr
  --check-pull        after getting a token, check it can read the image's manifest; a token
                      that cannot is cached for 2 minutes only, so a new IAM policy applies fast
                      (env OKE_CREDENTIAL_PROVIDER_CHECK_PULL=true)
  --json              status: print JSON for tools
  --prometheus FILE   status: write the figures for node_exporter's textfile collector to FILE
                      (atomically) instead of printing them
  --version           print the version
  --help              print this help

Environment: OCI_METADATA_BASE_URL (default ${
    DEFAULT_IMDS_BASES.join(", then ")
  }), OCI_SDK_AUTH_CLIENT_REGION_URL,
HTTPS_PROXY / NO_PROXY, DENO_CERT (extra CA file), OKE_CREDENTIAL_PROVIDER_RECORD=false (record no
calls for status).`;

const bad = (reason: string) => new PluginError("arguments", "BAD_INPUT", reason);

function level(value: string, source: string): Level {
  if (!LEVELS.includes(value as Level)) {
    throw bad(`${source} ${JSON.stringify(value)} is not one of ${LEVELS.join(", ")}`);
  }
  return value as Level;
}

/**
 * Parses the command line and the environment.
 *
 * @example
 * ```ts
 * const options = await parseOptions(["--timeout", "30"], (name) => Deno.env.get(name));
 * options.timeoutSeconds; // 30
 * ```
 */
export async function parseOptions(
  args: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<Options> {
  const options: Options = {
    command: "provide",
    cacheDir: env("OKE_CREDENTIAL_PROVIDER_CACHE_DIR") || DEFAULT_CACHE_DIR,
    timeoutSeconds: 45,
    logLevel: level(
      env("OKE_CREDENTIAL_PROVIDER_LOG_LEVEL") || "warn",
      "OKE_CREDENTIAL_PROVIDER_LOG_LEVEL",
    ),
    imdsBaseUrls: imdsBaseUrls(env("OCI_METADATA_BASE_URL")),
    federationEndpoint: env("OCI_SDK_AUTH_CLIENT_REGION_URL") || undefined,
    checkPull: env("OKE_CREDENTIAL_PROVIDER_CHECK_PULL") === "true",
    registries: [],
    record: env("OKE_CREDENTIAL_PROVIDER_RECORD") !== "false",
  };
  // Kubelet's config can set these through `env` rather than `args`: the warm path then never
  // loads node:util (~7 ms, a third of a warm run).
  if (args.length === 0) return options;
  const { parseArgs } = await import("node:util");
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "cache-dir": { type: "string" },
        timeout: { type: "string" },
        "log-level": { type: "string" },
        image: { type: "string" },
        registry: { type: "string", multiple: true },
        "check-pull": { type: "boolean" },
        json: { type: "boolean" },
        prometheus: { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean" },
      },
    });
  } catch (e) {
    throw bad(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (
    positionals.length > 1 ||
    (command !== undefined && !["doctor", "status", "warm", "refresh"].includes(command))
  ) {
    throw bad(`unexpected argument ${JSON.stringify(positionals.at(-1))} (see --help)`);
  }
  if (values.image !== undefined && command !== "doctor") {
    throw bad("--image is a flag of doctor");
  }
  options.registries = values.registry ?? [];
  if (options.registries.length > 0 && command !== "warm" && command !== "refresh") {
    throw bad("--registry is a flag of warm");
  }
  if (command === "refresh" && options.registries.length > 1) {
    throw bad("refresh takes at most one --registry");
  }
  for (const flag of ["json", "prometheus"] as const) {
    if (values[flag] !== undefined && command !== "status") {
      throw bad(`--${flag} is a flag of status`);
    }
  }
  if (values.prometheus === "") throw bad("--prometheus is empty");
  if (values["cache-dir"] !== undefined) {
    if (values["cache-dir"] === "") throw bad("--cache-dir is empty");
    options.cacheDir = values["cache-dir"];
  }
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
      throw bad(
        `--timeout ${JSON.stringify(values.timeout)} is not a number of seconds between 0 and 600`,
      );
    }
    options.timeoutSeconds = seconds;
  }
  if (values["log-level"] !== undefined) {
    options.logLevel = level(values["log-level"], "--log-level");
  }
  options.image = values.image;
  options.checkPull = values["check-pull"] ?? options.checkPull;
  options.json = values.json;
  options.prometheus = values.prometheus;
  options.command = values.help
    ? "help"
    : values.version
    ? "version"
    : (command as "doctor" | "status" | "warm" | "refresh" | undefined) ?? "provide";
  return options;
}
