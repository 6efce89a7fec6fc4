/**
 * The Instance Metadata Service (IMDS v2): the instance's certificate, private key and
 * intermediate certificate, and the region and realm it runs in.
 *
 * IMDS is link-local: it is always asked directly, never through `HTTP_PROXY` (which nodes behind
 * a corporate proxy often set in kubelet's environment), and on nodes without IPv4 it answers at
 * its IPv6 address, tried when the IPv4 one cannot be reached (as OCI's Python SDK does).
 *
 * @module
 */

import type { Deadline } from "./deadline.ts";
import { PluginError } from "./errors.ts";
import { call, readJson } from "./http.ts";
import type { Logger } from "./log.ts";
import { findRegion, type Region } from "./regions.ts";

/** The instance's identity documents and location, as IMDS serves them. */
export interface InstanceDocuments {
  certificatePem: string;
  privateKeyPem: string;
  intermediatePem: string;
  region: Region;
  /** The base URL that answered. */
  baseUrl: string;
}

/** Where and how to reach IMDS. */
export interface ImdsOptions {
  /** Base URLs to try in order: the first that can be reached is used. */
  baseUrls: readonly string[];
  deadline: Deadline;
  log: Logger;
}

/** One IMDS base, with the direct client that reaches it. */
interface Endpoint {
  baseUrl: string;
  client: Deno.HttpClient;
  deadline: Deadline;
  log: Logger;
}

// OCI documents retrying 404 (not yet provisioned), 429 (rate limit) and 5xx.
const RETRY_ON = [404, 429, 500, 502, 503, 504];

// IMDS answers a well-formed GET with 200, 404 or 429; anything else (403, 405, 502, a web page)
// comes from another server: the plugin never sends IMDS requests to a proxy, so a wrong base URL
// or something on the node intercepting link-local traffic.
const OTHER_SERVER_HINT =
  "IMDS answers only 200, 404 or 429: another server answered; check OCI_METADATA_BASE_URL, or what on this node intercepts traffic to IMDS";

/**
 * A client that never uses a proxy: its one "proxy" is a plain TCP connection to IMDS itself, so
 * `HTTP_PROXY` cannot reroute it, while `HTTPS_PROXY` still serves every other request.
 */
function directClient(baseUrl: string): Deno.HttpClient {
  const url = new URL(baseUrl);
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  return Deno.createHttpClient({ proxy: { transport: "tcp", hostname: url.hostname, port } });
}

async function get(
  path: string,
  endpoint: Endpoint,
  retryOn: readonly number[] = RETRY_ON,
  attempts = 8,
): Promise<Response> {
  const url = new URL(`${endpoint.baseUrl.replace(/\/+$/, "")}/${path}`);
  return await call(url, () => ({ headers: { authorization: "Bearer Oracle" } }), {
    step: "IMDS",
    deadline: endpoint.deadline,
    log: endpoint.log,
    retryOn,
    attemptTimeoutMs: 5_000,
    // IMDS rate-limits bursts (429); OCI's Go SDK makes 8 tries, and the deadline bounds them all.
    attempts,
    hint: (status) => status === 404 || status === 429 ? undefined : OTHER_SERVER_HINT,
    client: endpoint.client,
  });
}

const text = async (path: string, endpoint: Endpoint) => await (await get(path, endpoint)).text();

/** The region `instance/regionInfo/` describes, or why it cannot be used. */
async function regionInfo(options: Endpoint): Promise<Region | string> {
  let info: Record<string, unknown>;
  try {
    // Older metadata services lack it: a 404 is an answer here, not a reason to wait.
    const response = await get("instance/regionInfo/", options, RETRY_ON.filter((s) => s !== 404));
    info = await readJson(response, "IMDS");
  } catch (e) {
    if (!(e instanceof PluginError) || !(e.status === 404 || e.code === "BAD_RESPONSE")) throw e;
    return e.status === 404 ? "is absent" : e.reason;
  }
  const fields = [info.regionKey, info.regionIdentifier, info.realmKey, info.realmDomainComponent];
  if (!fields.every((v): v is string => typeof v === "string" && v !== "")) return "lacks fields";
  const [regionKey, regionId, realmKey, realmDomain] = fields;
  return { regionKey: regionKey.toLowerCase(), regionId, realmKey, realmDomain };
}

/**
 * The region from `instance/regionInfo/`, which knows every region, dedicated and Alloy ones
 * included; where it is unusable, from `instance/region` and the region table.
 */
async function region(options: Endpoint): Promise<Region> {
  const info = await regionInfo(options);
  if (typeof info !== "string") return info;
  options.log.info(
    "IMDS",
    `instance/regionInfo/ ${info}: using instance/region and the region table`,
  );
  const name = (await text("instance/region", options)).trim();
  const known = findRegion(name);
  if (known) return known;
  throw new PluginError(
    "IMDS",
    "BAD_RESPONSE",
    `region ${
      JSON.stringify(name.slice(0, 64))
    } is not in the region table, and instance/regionInfo/ ${info}`,
    {
      host: new URL(options.baseUrl).host,
      // A region name that is not even shaped like one (a web page) came from a proxy.
      hint: /^[a-z0-9-]+$/i.test(name) ? undefined : OTHER_SERVER_HINT,
    },
  );
}

/**
 * Whether a failure says nothing listens at the address (refused, no route: an IPv6-only node
 * asking the IPv4 address), rather than that IMDS answered badly or slowly.
 */
const unreachable = (e: unknown): e is PluginError =>
  e instanceof PluginError && e.code === "NETWORK";

/**
 * The first base URL where something listens (any answer will do: a 429 is IMDS too); the last
 * is not asked first, its own tries tell. With it, why the ones before it were passed over.
 */
async function reachableEndpoint(
  options: ImdsOptions,
): Promise<{ endpoint: Endpoint; passed: PluginError[] }> {
  const passed: PluginError[] = [];
  const bases = options.baseUrls;
  for (const [i, baseUrl] of bases.entries()) {
    const endpoint = { baseUrl, client: directClient(baseUrl), ...options };
    if (i === bases.length - 1) return { endpoint, passed };
    try {
      // Two tries, so that one dropped connection does not send a node to the other address.
      await (await get("instance/region", endpoint, [], 2)).body?.cancel();
      return { endpoint, passed };
    } catch (e) {
      // Answered, if badly, or slow: IMDS is here, and the real requests will say what is wrong.
      if (!unreachable(e)) return { endpoint, passed };
      endpoint.client.close();
      passed.push(e);
      options.log.info(
        "IMDS",
        `${e.host} cannot be reached (${e.reason}): trying ${new URL(bases[i + 1]).host}`,
      );
    }
  }
  throw new Error("no IMDS base URL"); // options.baseUrls is never empty
}

/**
 * Fetches the identity documents and the region, all at once, from the first base URL that can
 * be reached.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { DEFAULT_IMDS_BASES } from "./options.ts";
 *
 * const docs = await fetchInstanceDocuments({
 *   baseUrls: DEFAULT_IMDS_BASES,
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * docs.region.regionId; // "us-ashburn-1"
 * ```
 */
export async function fetchInstanceDocuments(options: ImdsOptions): Promise<InstanceDocuments> {
  const { endpoint, passed } = await reachableEndpoint(options);
  try {
    const [certificatePem, privateKeyPem, intermediatePem, r] = await Promise.all([
      text("identity/cert.pem", endpoint),
      text("identity/key.pem", endpoint),
      text("identity/intermediate.pem", endpoint),
      region(endpoint),
    ]);
    return {
      certificatePem,
      privateKeyPem,
      intermediatePem,
      region: r,
      baseUrl: endpoint.baseUrl,
    };
  } catch (e) {
    if (passed.length === 0 || !unreachable(e)) throw e;
    // Nothing anywhere: named from the first address, the one a node most likely has.
    const [first] = passed;
    const others = [...passed.slice(1), e].map((p) => `${p.host}: ${p.reason}`).join("; ");
    throw new PluginError("IMDS", "NETWORK", `${first.reason}; and at ${others}`, {
      host: first.host,
      cause: e,
    });
  } finally {
    endpoint.client.close();
  }
}
