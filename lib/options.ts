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

/**
 * Every environment variable the plugin reads (a refresh process is given the same). The proxy
 * variables are read by the plugin only for proxymux (per-workload identity, lib/cluster_tls.ts),
 * which must trust the cluster CA alone, which `fetch` cannot do: that connection applies them
 * itself. Everywhere else the Deno runtime applies them.
 */
export const ENV_VARIABLES = [
  "OKE_CREDENTIAL_PROVIDER_CACHE_DIR",
  "OKE_CREDENTIAL_PROVIDER_CHECK_PULL",
  "OKE_CREDENTIAL_PROVIDER_LOG_LEVEL",
  "OKE_CREDENTIAL_PROVIDER_RECORD",
  "OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY",
  "OKE_CREDENTIAL_PROVIDER_NODE_IDENTITY",
  "OKE_CREDENTIAL_PROVIDER_PROXYMUX_URL",
  "OKE_CREDENTIAL_PROVIDER_CLUSTER_CA",
  "OKE_CREDENTIAL_PROVIDER_IDENTITY_DOMAIN_URL",
  "OKE_CREDENTIAL_PROVIDER_FEDERATION_TOKEN_TYPE",
  "HTTPS_PROXY",
  "https_proxy",
  "NO_PROXY",
  "no_proxy",
  "OCI_METADATA_BASE_URL",
  "OCI_SDK_AUTH_CLIENT_REGION_URL",
] as const;
/**
 * The cluster CA on an OKE worker node (kubelet's own trust for the API server), which also
 * signs proxymux's certificate. The path is OKE's usual one; a real node must confirm it.
 */
export const DEFAULT_CLUSTER_CA = "/etc/kubernetes/ca.crt";

/** Which exchange turns a service-account token into an OCI session token. */
export type WorkloadBackend = "oke" | "federation";

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
  /** `--workload-identity`: the exchange for service accounts that opt in; none = refuse them. */
  workloadIdentity?: WorkloadBackend;
  /** `--node-identity`: may service accounts that did not opt in pull as the node? */
  nodeIdentity: "allow" | "deny";
  /** `--proxymux-url`: OKE's exchange endpoint, path included. */
  proxymuxUrl?: string;
  /** `--cluster-ca`: the only CA trusted for proxymux. */
  clusterCa: string;
  /** `--identity-domain-url`: the identity domain's base URL. */
  identityDomainUrl?: string;
  /** `--federation-token-type`: user (upst) or resource (rpst) principal session token. */
  federationTokenType: "upst" | "rpst";
  /** `doctor --service-account-token FILE`. */
  serviceAccountTokenFile?: string;
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

Per-workload identity (kubelet >= 1.34 with tokenAttributes; see README "Per-workload identity"):
  --workload-identity oke|federation  how service accounts annotated
                      oke-credential-provider.io/pull-identity: workload get their own token:
                      OKE Workload Identity (proxymux) or an identity domain's token exchange
  --node-identity allow|deny  may service accounts that did not opt in pull with the node's
                      identity (default allow)
  --proxymux-url URL  oke: the exchange endpoint, e.g.
                      https://<API server private IP>:12250/resourcePrincipalSessionTokens
  --cluster-ca FILE   oke: the only CA trusted for proxymux (default ${DEFAULT_CLUSTER_CA})
  --identity-domain-url URL  federation: the domain's base URL (https://idcs-….identity.oraclecloud.com)
  --federation-token-type upst|rpst  federation: token type (default upst)
  Each also from env: OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY, _NODE_IDENTITY, _PROXYMUX_URL,
  _CLUSTER_CA, _IDENTITY_DOMAIN_URL, _FEDERATION_TOKEN_TYPE.
  doctor --service-account-token FILE  run the workload exchange with a token from FILE

  --version           print the version
  --help              print this help

Environment: OCI_METADATA_BASE_URL (default ${
    DEFAULT_IMDS_BASES.join(", then ")
  }), OCI_SDK_AUTH_CLIENT_REGION_URL,
HTTPS_PROXY / NO_PROXY, DENO_CERT (extra CA file), OKE_CREDENTIAL_PROVIDER_RECORD=false (record no
calls for status).`;

const bad = (reason: string) => new PluginError("arguments", "BAD_INPUT", reason);

function oneOf<T extends string>(value: string, allowed: readonly T[], source: string): T {
  if (!allowed.includes(value as T)) {
    throw bad(`${source} ${JSON.stringify(value)} is not one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function httpsUrl(value: string, source: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad(`${source} ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "https:") throw bad(`${source} ${JSON.stringify(value)} is not https`);
  return url.href;
}

/** The per-workload settings from the environment (kubelet's `env`); flags override them. */
function workloadFromEnv(options: Options, env: (name: string) => string | undefined): void {
  // A variable that is set must name one of `allowed`.
  const choice = <T extends string>(name: string, allowed: readonly T[]) => {
    const value = env(name);
    return value ? oneOf(value, allowed, name) : undefined;
  };
  const backend = choice("OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY", BACKENDS);
  if (backend) options.workloadIdentity = backend;
  options.nodeIdentity = choice("OKE_CREDENTIAL_PROVIDER_NODE_IDENTITY", NODE_IDENTITY) ??
    options.nodeIdentity;
  const proxymux = env("OKE_CREDENTIAL_PROVIDER_PROXYMUX_URL");
  if (proxymux) options.proxymuxUrl = httpsUrl(proxymux, "OKE_CREDENTIAL_PROVIDER_PROXYMUX_URL");
  options.clusterCa = env("OKE_CREDENTIAL_PROVIDER_CLUSTER_CA") || options.clusterCa;
  const domain = env("OKE_CREDENTIAL_PROVIDER_IDENTITY_DOMAIN_URL");
  if (domain) {
    options.identityDomainUrl = httpsUrl(domain, "OKE_CREDENTIAL_PROVIDER_IDENTITY_DOMAIN_URL");
  }
  options.federationTokenType =
    choice("OKE_CREDENTIAL_PROVIDER_FEDERATION_TOKEN_TYPE", TOKEN_TYPES) ??
      options.federationTokenType;
}

const BACKENDS = ["oke", "federation"] as const;
const NODE_IDENTITY = ["allow", "deny"] as const;
const TOKEN_TYPES = ["upst", "rpst"] as const;

function level(value: string, source: string): Level {
  return oneOf(value, LEVELS, source);
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
    nodeIdentity: "allow",
    clusterCa: DEFAULT_CLUSTER_CA,
    federationTokenType: "upst",
  };
  workloadFromEnv(options, env);
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
        "workload-identity": { type: "string" },
        "node-identity": { type: "string" },
        "proxymux-url": { type: "string" },
        "cluster-ca": { type: "string" },
        "identity-domain-url": { type: "string" },
        "federation-token-type": { type: "string" },
        "service-account-token": { type: "string" },
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
  if (values["service-account-token"] !== undefined && command !== "doctor") {
    throw bad("--service-account-token is a flag of doctor");
  }
  options.serviceAccountTokenFile = values["service-account-token"];
  const w = values["workload-identity"];
  if (w !== undefined) options.workloadIdentity = oneOf(w, BACKENDS, "--workload-identity");
  const n = values["node-identity"];
  if (n !== undefined) options.nodeIdentity = oneOf(n, NODE_IDENTITY, "--node-identity");
  const p = values["proxymux-url"];
  if (p !== undefined) options.proxymuxUrl = httpsUrl(p, "--proxymux-url");
  if (values["cluster-ca"] !== undefined) {
    if (values["cluster-ca"] === "") throw bad("--cluster-ca is empty");
    options.clusterCa = values["cluster-ca"];
  }
  const d = values["identity-domain-url"];
  if (d !== undefined) options.identityDomainUrl = httpsUrl(d, "--identity-domain-url");
  const t = values["federation-token-type"];
  if (t !== undefined) {
    options.federationTokenType = oneOf(t, TOKEN_TYPES, "--federation-token-type");
  }
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
