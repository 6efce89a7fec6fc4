/**
 * The Instance Metadata Service (IMDS v2): the instance's certificate, private key and
 * intermediate certificate, and the region and realm it runs in.
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
}

/** Where and how to reach IMDS. */
export interface ImdsOptions {
  baseUrl: string;
  deadline: Deadline;
  log: Logger;
}

// OCI documents retrying 404 (not yet provisioned), 429 (rate limit) and 5xx.
const RETRY_ON = [404, 429, 500, 502, 503, 504];

// IMDS answers a well-formed GET with 200, 404 or 429; anything else (403, 405, 407, 502, a web
// page) most often comes from an HTTP proxy that the node's HTTP_PROXY sends IMDS requests to.
const PROXY_HINT = "is IMDS reached directly? put 169.254.169.254 in NO_PROXY";

async function get(
  path: string,
  options: ImdsOptions,
  retryOn: readonly number[] = RETRY_ON,
): Promise<Response> {
  const url = new URL(`${options.baseUrl.replace(/\/+$/, "")}/${path}`);
  return await call(url, () => ({ headers: { authorization: "Bearer Oracle" } }), {
    step: "IMDS",
    deadline: options.deadline,
    log: options.log,
    retryOn,
    attemptTimeoutMs: 5_000,
    // IMDS rate-limits bursts (429); OCI's Go SDK makes 8 tries, and the deadline bounds them all.
    attempts: 8,
    hint: (status) => status === 404 || status === 429 ? undefined : PROXY_HINT,
  });
}

const text = async (path: string, options: ImdsOptions) => await (await get(path, options)).text();

/** The region `instance/regionInfo/` describes, or why it cannot be used. */
async function regionInfo(options: ImdsOptions): Promise<Region | string> {
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
async function region(options: ImdsOptions): Promise<Region> {
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
      hint: /^[a-z0-9-]+$/i.test(name) ? undefined : PROXY_HINT,
    },
  );
}

/**
 * Fetches the identity documents and the region, all at once.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 * import { DEFAULT_IMDS_BASE } from "./options.ts";
 *
 * const docs = await fetchInstanceDocuments({
 *   baseUrl: DEFAULT_IMDS_BASE,
 *   deadline: deadline(45),
 *   log: createLogger("warn"),
 * });
 * docs.region.regionId; // "us-ashburn-1"
 * ```
 */
export async function fetchInstanceDocuments(options: ImdsOptions): Promise<InstanceDocuments> {
  const [certificatePem, privateKeyPem, intermediatePem, r] = await Promise.all([
    text("identity/cert.pem", options),
    text("identity/key.pem", options),
    text("identity/intermediate.pem", options),
    region(options),
  ]);
  return { certificatePem, privateKeyPem, intermediatePem, region: r };
}
