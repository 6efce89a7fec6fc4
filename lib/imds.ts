/**
 * The Instance Metadata Service (IMDS v2): the instance's certificate, private key and
 * intermediate certificate, and the region and realm it runs in.
 *
 * @module
 */

import { PluginError } from "./errors.ts";
import { call, type Deadline, readJson } from "./http.ts";
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

/**
 * The region from `instance/regionInfo/`, which knows every region, dedicated and Alloy ones
 * included; older metadata services lack it, and then `instance/region` and the region table do.
 */
async function region(options: ImdsOptions): Promise<Region> {
  let info: Record<string, unknown> | undefined;
  // Why regionInfo could not be used, for the error when the fallback fails too.
  let unusable = "instance/regionInfo/ lacks fields";
  try {
    info = await readJson(
      await get("instance/regionInfo/", options, RETRY_ON.filter((s) => s !== 404)),
      "IMDS",
    );
  } catch (e) {
    if (!(e instanceof PluginError) || !(e.status === 404 || e.code === "BAD_RESPONSE")) throw e;
    unusable = `instance/regionInfo/ ${e.status === 404 ? "is absent" : e.reason}`;
    options.log.info(
      "IMDS",
      `no usable instance/regionInfo/ (${e.reason}); using instance/region and the region table`,
    );
  }
  if (info) {
    const { regionKey, regionIdentifier, realmKey, realmDomainComponent } = info;
    if (
      [regionKey, regionIdentifier, realmKey, realmDomainComponent].every((v) =>
        typeof v === "string" && v
      )
    ) {
      return {
        regionKey: (regionKey as string).toLowerCase(),
        regionId: regionIdentifier as string,
        realmKey: realmKey as string,
        realmDomain: realmDomainComponent as string,
      };
    }
    options.log.info(
      "IMDS",
      "instance/regionInfo/ lacks fields; using instance/region and the region table",
    );
  }
  const name = (await text("instance/region", options)).trim();
  const known = findRegion(name);
  if (!known) {
    throw new PluginError(
      "IMDS",
      "BAD_RESPONSE",
      `region ${JSON.stringify(name.slice(0, 64))} is not in the region table, and ${unusable}`,
      {
        host: new URL(options.baseUrl).host,
        // A region name that is not even shaped like one (a web page) came from a proxy.
        hint: /^[a-z0-9-]+$/i.test(name) ? undefined : PROXY_HINT,
      },
    );
  }
  return known;
}

/**
 * Fetches the identity documents and the region, all at once.
 *
 * @example
 * ```ts
 * const docs = await fetchInstanceDocuments({ baseUrl: DEFAULT_IMDS_BASE, deadline: deadline(45), log });
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
