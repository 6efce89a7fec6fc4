/**
 * `oke-credential-provider doctor [--image REF] [--service-account-token FILE]`: first what
 * happened, the calls recorded on the node (as `status` prints them); then every step of the
 * plugin, run on the node now, one line per check with ✓ or ✗ and its time; for each ✗, the likely
 * cause and the fix. With a service-account token, the registry steps are the per-workload ones:
 * the exchange (`--workload-identity`) and the docker token with the workload's own identity (the
 * token is never printed). No cached token is used and nothing is written: this is a fresh look.
 * Last, what the background refresh recorded for hosts `status` had nothing on
 * (lib/refresh_record.ts). Exit status 0 only if all checks pass.
 *
 * @module
 */

import { readRefreshRecord } from "./refresh_record.ts";
import { describe, PluginError } from "./errors.ts";
import { federationUrl } from "./federation.ts";
import type { Deadline } from "./deadline.ts";
import { call } from "./http.ts";
import { type InstanceIdentity, instanceIdentity } from "./identity.ts";
import { type ImageReference, ocirHost, parseImage, trustedRegistry } from "./image.ts";
import { fetchInstanceDocuments, type InstanceDocuments } from "./imds.ts";
import type { Logger } from "./log.ts";
import { fetchDockerToken, policyHint } from "./ocir.ts";
import type { Options } from "./options.ts";
import { checkPull } from "./pull_check.ts";
import { canRunItself } from "./refresh.ts";
import { readStatus } from "./status_record.ts";
import { statusReport, statusText } from "./status_report.ts";
import { proxymuxSession, type WorkloadSession } from "./proxymux.ts";
import { exchangeAtIdentityDomain } from "./token_exchange.ts";
import { serviceAccountOf } from "./workload.ts";
import { openSession, type Session } from "./session.ts";

/** A check's outcome: what it found, or why it failed and what to do. */
type Outcome<T> = { value: T; detail: string };

const DAY = 86400_000;

/** Runs checks in order, printing a line each; a failure stops the ones that depend on it. */
class Report {
  failed = false;
  constructor(private readonly print: (line: string) => void) {}

  async check<T>(
    name: string,
    run: () => Promise<Outcome<T>>,
    fix: (e: unknown) => Promise<string> | string,
  ): Promise<T | undefined> {
    if (this.failed) {
      this.print(`- ${name.padEnd(14)} skipped`);
      return undefined;
    }
    const started = performance.now();
    const ms = () => `${Math.round(performance.now() - started)} ms`;
    try {
      const { value, detail } = await run();
      this.print(`✓ ${name.padEnd(14)} ${detail} (${ms()})`);
      return value;
    } catch (e) {
      this.failed = true;
      this.print(`✗ ${name.padEnd(14)} ${describe(e)} (${ms()})`);
      this.print(`  fix: ${await fix(e)}`);
      return undefined;
    }
  }

  /** A line of facts found by the check before it. */
  note(name: string, detail: () => string): void {
    if (!this.failed) this.print(`✓ ${name.padEnd(14)} ${detail()}`);
  }
}

/** The instance's own registry host, when `--image` names none. */
function homeRegistry(identity: InstanceIdentity): string {
  const r = identity.region;
  return r.realmKey === "oc1"
    ? `${r.regionKey}.ocir.io`
    : `ocir.${r.regionId}.oci.${r.realmDomain}`;
}

/** Clock skew against a server's `Date` header, in seconds (positive: we are ahead). */
async function measureSkew(
  url: URL,
  options: { deadline: Deadline; log: Logger },
): Promise<number | undefined> {
  try {
    const response = await call(new URL("/", url), () => ({ method: "GET" }), {
      step: "federation",
      ...options,
      retryOn: [],
      attempts: 1,
      accept: [400, 401, 403, 404, 405],
    });
    await response.body?.cancel();
    const date = Date.parse(response.headers.get("date") ?? "");
    return Number.isNaN(date) ? undefined : Math.round((Date.now() - date) / 1000);
  } catch {
    return undefined;
  }
}

/** What doctor runs with. */
export interface DoctorContext {
  deadline: Deadline;
  log: Logger;
  /** Writes one line of the report. */
  print: (line: string) => void;
}

/**
 * Runs the checks and returns the exit status.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { parseOptions } from "./options.ts";
 *
 * const options = await parseOptions(["doctor"]);
 * const status = await doctor(options, {
 *   deadline: deadline(options.timeoutSeconds),
 *   log: createLogger(options.logLevel),
 *   print: (line) => console.log(line),
 * });
 * ```
 */
export async function doctor(
  options: Options,
  { deadline: d, log, print }: DoctorContext,
): Promise<number> {
  print("what happened (the calls recorded on this node, as `status` prints them):");
  // Hosts whose refreshes `status` has shown already: the last section leaves them out.
  const shown = new Set<string>();
  try {
    const records = await readStatus(options.cacheDir);
    for (const record of records) shown.add(record.host);
    const text = statusText(statusReport(options.cacheDir, records, Date.now() / 1000));
    for (const line of text.split("\n")) print(`  ${line}`);
  } catch (e) {
    print(`  cannot read ${options.cacheDir}: ${describe(e)}`);
  }
  print("what happens now (every step, run on this node):");
  const report = new Report(print);
  const retryHint =
    "see the message: IMDS must answer on this node (IMDS v2 enabled; nothing on the node intercepting 169.254.169.254)";
  let image: ImageReference | undefined;
  if (options.image !== undefined) {
    image = await report.check(
      "image",
      () => {
        const parsed = parseImage(options.image!);
        if (!ocirHost(parsed.registry)) {
          throw new PluginError(
            "image",
            "REFUSED",
            `${parsed.registry} is not an OCIR registry host`,
          );
        }
        return Promise.resolve({
          value: parsed,
          detail: `${parsed.registry}/${parsed.repository}`,
        });
      },
      () =>
        "give an OCIR image: <region>.ocir.io/<namespace>/<repo>:<tag> or ocir.<region>.oci.<realm domain>/…",
    );
  }

  // The cold path's session step (lib/session.ts) without a cache: opened first, as the cold path
  // does, so that its key is made while IMDS answers.
  const session = await openSession(undefined, {
    federationEndpoint: options.federationEndpoint,
    deadline: d,
    log,
  });
  const docs = await report.check<InstanceDocuments>("IMDS", async () => {
    const value = await fetchInstanceDocuments({
      baseUrls: options.imdsBaseUrls,
      deadline: d,
      log,
    });
    return { value, detail: `${new URL(value.baseUrl).origin} answered` };
  }, () => retryHint);

  const identity = await report.check<InstanceIdentity>(
    "certificate",
    async () => {
      const value = await instanceIdentity(docs!);
      const days = Math.floor((value.leaf.notAfter.getTime() - Date.now()) / DAY);
      return {
        value,
        detail:
          `valid until ${value.leaf.notAfter.toISOString()} (${days} days left; IMDS rotates it)`,
      };
    },
    (e) =>
      e instanceof PluginError && e.hint
        ? e.hint
        : "IMDS served an unusable certificate or key; if it persists, the instance's identity is broken: report it to OCI support",
  );

  report.note(
    "instance",
    () =>
      `tenancy ${identity!.tenancy}, compartment ${identity!.compartment ?? "?"}, instance ${
        identity!.instance ?? "?"
      }`,
  );
  report.note("region", () => {
    const r = identity!.region;
    return `${r.regionId} (${r.regionKey.toUpperCase()}), realm ${r.realmKey} (${r.realmDomain})`;
  });
  const authUrl = identity && federationUrl(identity.region, options.federationEndpoint);
  report.note("auth endpoint", () => authUrl!.href);

  const instance = await report.check<Session>("federation", async () => {
    const value = await session.get(identity!);
    return {
      value,
      detail: `security token valid until ${new Date(value.expiresAt * 1000).toISOString()}`,
    };
  }, async (e) => {
    if (!(e instanceof PluginError) || e.status !== 401) {
      return e instanceof PluginError && e.hint
        ? e.hint
        : "check the network path to the auth service (proxy, DNS, firewall)";
    }
    const skew = await measureSkew(authUrl!, { deadline: d, log });
    if (skew !== undefined && Math.abs(skew) > 60) {
      return `this node's clock is ${skew > 0 ? "ahead" : "behind"} by ${
        Math.abs(skew)
      } s (the auth service allows 300): fix time sync (chronyc tracking; systemctl restart chronyd)`;
    }
    return `clock skew is ${
      skew ?? "unknown"
    } s, so the certificate or tenancy is the problem: the instance certificate from IMDS may be stale; retry in a few minutes, then report to OCI support`;
  });

  const host = image ? ocirHost(image.registry)!.host : identity && homeRegistry(identity);
  // With a service-account token, the registry is asked with the workload's identity instead.
  let signer: Pick<Session, "token" | "privateKey"> | undefined = instance;
  let policy = () => policyHint(identity?.compartment);
  if (options.serviceAccountTokenFile !== undefined) {
    const workload = await workloadChecks(options, report, signer, { deadline: d, log });
    signer = workload?.session;
    policy = () => workload?.policy ?? "";
  }
  const docker = await report.check(
    "OCIR token",
    async () => {
      // The image's host was only checked to be OCIR-shaped: its realm is judged now.
      trustedRegistry(host!, identity!.region.realmDomain, "OCIR token");
      const value = await fetchDockerToken(host!, {
        securityToken: signer!.token,
        sessionKey: signer!.privateKey,
        deadline: d,
        log,
      });
      return {
        value,
        detail: `${host} issued a docker token valid until ${
          new Date(value.expiresAt * 1000).toISOString()
        }`,
      };
    },
    (e) =>
      e instanceof PluginError && (e.status === 401 || e.status === 403)
        ? policy()
        : e instanceof PluginError && e.code === "REFUSED"
        ? "give an image on an OCIR host of a known OCI realm or of this node's own realm"
        : "check the network path to the registry host (proxy, DNS, firewall)",
  );

  if (image) {
    await report.check(
      "manifest",
      async () => {
        const check = await checkPull(image!, host!, docker!.token, {
          deadline: d,
          log,
          realmDomain: identity!.region.realmDomain,
        });
        if (!check.allowed) {
          throw new PluginError("manifest check", "REFUSED", check.detail, { host });
        }
        return { value: null, detail: check.detail };
      },
      (e) =>
        e instanceof PluginError && e.code === "REFUSED" && e.step === "manifest check"
          ? `policy missing: ${policy()}; a new policy needs a new token: kubelet asks again when its cache expires`
          : "check the network path to the registry host (proxy, DNS, firewall)",
    );
  }
  await backgroundRefreshes(options.cacheDir, shown, print);
  return report.failed ? 1 : 0;
}

/**
 * What the background refresh last did for each host with a record in the cache directory but
 * none of its calls recorded for `status` (recording off, or its record unwritable): the others'
 * refreshes were shown with their calls. The tokens themselves are not read. Then whether the
 * refresh can start at all, and how to warm a cache that has no record.
 */
async function backgroundRefreshes(
  dir: string,
  shown: ReadonlySet<string>,
  print: (line: string) => void,
): Promise<void> {
  const hosts: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const host = /^refresh-(.+)\.json$/.exec(entry.name)?.[1];
      if (host) hosts.push(host);
    }
  } catch {
    // no cache directory (yet), or not readable here: nothing recorded
  }
  const iso = (s: number) => new Date(s * 1000).toISOString();
  for (const host of hosts.sort().filter((h) => !shown.has(h))) {
    const r = await readRefreshRecord(dir, host);
    if (!r) continue;
    print(
      r.ok
        ? `✓ refresh        ${host}: last background refresh succeeded at ${iso(r.at)}`
        : `! refresh        ${host}: ${r.failures} background refresh(es) failed, the last at ${
          iso(r.at)
        } (${r.reason}); next try from ${
          iso(r.retryAt)
        }; pulls use the cached token while it is usable`,
    );
  }
  if (!canRunItself()) {
    print(
      `! refresh        this binary (${Deno.execPath()}) may not run itself, so stale tokens are refreshed only when kubelet waits: install it as /usr/local/bin/oke-credential-provider`,
    );
  }
  if (hosts.length === 0) {
    print(
      `- refresh        no background refresh recorded in ${dir}; \`oke-credential-provider warm\` caches tokens ahead of kubelet`,
    );
  }
}

/**
 * `--service-account-token FILE`: the token's service account, then the configured exchange,
 * each failure explained (audience refused, not an enhanced cluster, trust missing, exchange
 * policy missing). Returns the workload's session and the policy it needs.
 */
async function workloadChecks(
  options: Options,
  report: Report,
  node: WorkloadSession | undefined,
  context: { deadline: Deadline; log: Logger },
): Promise<{ session?: WorkloadSession; policy: string } | undefined> {
  const file = options.serviceAccountTokenFile!;
  let saToken = "";
  const sa = await report.check(
    "service acct",
    async () => {
      saToken = (await Deno.readTextFile(file)).trim();
      const value = serviceAccountOf(saToken);
      return {
        value,
        detail: `${value.namespace}/${value.name} (uid ${value.uid}), token valid until ${
          new Date(value.expiresAt * 1000).toISOString()
        }`,
      };
    },
    (e) =>
      e instanceof PluginError
        ? "give a current token of the pod's service account, e.g. kubectl create token <sa> -n <ns> --audience <the kubelet config's serviceAccountTokenAudience> > FILE"
        : `cannot read ${file}`,
  );
  if (!sa) return undefined;
  const policy = options.workloadIdentity === "oke"
    ? `Allow any-user to read repos in compartment <c> where all {request.principal.type = 'workload', request.principal.namespace = '${sa.namespace}', request.principal.service_account = '${sa.name}', request.principal.cluster_id = '<cluster ocid>'}`
    : `a read repos statement for the federated principal of ${sa.namespace}/${sa.name} (README "Per-workload identity")`;
  const session = await report.check<WorkloadSession>("exchange", async () => {
    if (options.workloadIdentity === "oke") {
      if (!options.proxymuxUrl) throw new Error("--proxymux-url is not set");
      const url = new URL(options.proxymuxUrl);
      const value = await proxymuxSession(saToken, {
        url,
        clusterCa: options.clusterCa,
        ...context,
      });
      return { value, detail: `proxymux ${url.host} issued a workload session token` };
    }
    if (options.workloadIdentity === "federation") {
      if (!options.identityDomainUrl) throw new Error("--identity-domain-url is not set");
      const value = await exchangeAtIdentityDomain(saToken, {
        identityDomainUrl: options.identityDomainUrl,
        tokenType: options.federationTokenType,
        node: node!,
        ...context,
      });
      return {
        value,
        detail: `${
          new URL(options.identityDomainUrl).host
        } issued a ${options.federationTokenType.toUpperCase()}`,
      };
    }
    throw new Error("--workload-identity is not set");
  }, (e) => exchangeFix(e, options));
  return { session, policy };
}

/** Why an exchange failed, in the operator's terms. */
function exchangeFix(e: unknown, options: Options): string {
  if (!(e instanceof PluginError)) {
    return "set --workload-identity oke (with --proxymux-url) or federation (with --identity-domain-url)";
  }
  if (options.workloadIdentity === "oke") {
    if (e.status === 401) {
      return "audience refused: proxymux did not accept this token; request it for the API server's own audience (tokenAttributes.serviceAccountTokenAudience; which audiences proxymux accepts is unverified)";
    }
    if (e.status === 403) {
      return "not an enhanced cluster: OKE Workload Identity needs an enhanced cluster; use --workload-identity federation";
    }
    return e.hint ??
      "check --proxymux-url, --cluster-ca and that port 12250 of the API endpoint is reachable";
  }
  if (e.status === 400) {
    return /trust/i.test(e.reason)
      ? "trust missing: create an Identity Propagation Trust in the domain for this cluster's issuer, with its JWKS"
      : `the identity domain refused the token (${e.reason}): check the trust's issuer, keys and audience`;
  }
  if (e.status === 401) {
    return "policy missing: allow the workers' dynamic group to exchange tokens in this identity domain";
  }
  return e.hint ?? "check --identity-domain-url and the network path to the identity domain";
}
