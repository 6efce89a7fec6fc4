/**
 * Image references and registry hosts: which registry an image lives on, and whether that
 * registry is OCIR, the only kind of host the plugin ever sends a request (and so a token) to.
 *
 * @module
 */

import { PluginError, type Step } from "./errors.ts";
import { REALM_DOMAINS, type Region } from "./regions.ts";

/** A parsed image reference: `host[:port]/path[:tag][@digest]`. */
export interface ImageReference {
  /** Registry host, with `:port` when the reference has one; `docker.io` when it names none. */
  registry: string;
  /** Repository path, without the host. */
  repository: string;
  tag?: string;
  digest?: string;
}

// The grammar of github.com/distribution/reference, written out here.
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PORT = /^[0-9]{1,5}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const MAX_NAME = 255;

const bad = (reference: string, why: string) =>
  new PluginError(
    "image",
    "BAD_INPUT",
    `image reference ${JSON.stringify(reference.slice(0, 300))} ${why}`,
  );

// Distribution's grammar allows an IPv6 literal in brackets, with a port or without.
const IPV6_HOST = /^\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?$/;

function isDomain(text: string): boolean {
  if (text.startsWith("[")) return IPV6_HOST.test(text);
  const colon = text.lastIndexOf(":");
  const host = colon < 0 ? text : text.slice(0, colon);
  if (colon >= 0 && !PORT.test(text.slice(colon + 1))) return false;
  return host.split(".").every((label) => DOMAIN_LABEL.test(label));
}

/**
 * Parses an image reference as container runtimes do.
 *
 * @example
 * ```ts
 * parseImage("iad.ocir.io/ns/app:1.2");
 * // { registry: "iad.ocir.io", repository: "ns/app", tag: "1.2" }
 * parseImage("nginx").registry; // "docker.io"
 * ```
 */
export function parseImage(reference: string): ImageReference {
  let rest = reference;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(reference, "has an invalid digest");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(reference, "has an invalid tag");
  }
  if (rest.length === 0 || rest.length > MAX_NAME) throw bad(reference, "has no valid name");
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  // As in Docker: the first component is a host only if it looks like one.
  const hasHost = first !== "" &&
    (first.includes(".") || first.includes(":") || first === "localhost" ||
      first !== first.toLowerCase());
  const registry = hasHost ? first : "docker.io";
  const repository = hasHost ? rest.slice(slash + 1) : rest;
  if (hasHost && !isDomain(registry)) throw bad(reference, "has an invalid registry host");
  if (!repository.split("/").every((c) => PATH_COMPONENT.test(c))) {
    throw bad(reference, "has an invalid repository path");
  }
  return {
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  };
}

/** An OCIR registry host and what its name tells about where it is. */
export interface OcirHost {
  /** The host, lower-case, as requests go to it. */
  host: string;
  /** The realm domain the host belongs to (`oraclecloud.com` for `*.ocir.io`). */
  realmDomain: string;
  /** True when the realm domain is a known OCI realm; otherwise only the node's own realm may vouch for it. */
  knownRealm: boolean;
}

const OC1_HOST = /^[a-z][a-z0-9-]*\.ocir\.io$/;
const REALM_HOST = /^ocir\.[a-z][a-z0-9-]*\.oci\.((?:[a-z0-9-]+\.)+[a-z]{2,})$/;

/**
 * Classifies a registry host: an OCIR host form (`<regionKey>.ocir.io`, `<regionId>.ocir.io`,
 * `ocir.<regionId>.oci.<realmDomain>`) or `undefined` for any other host, ports included.
 *
 * @example
 * ```ts
 * ocirHost("iad.ocir.io"); // { host: "iad.ocir.io", realmDomain: "oraclecloud.com", knownRealm: true }
 * ocirHost("ocir.io.evil.com"); // undefined
 * ```
 */
export function ocirHost(registry: string): OcirHost | undefined {
  const host = registry.toLowerCase();
  if (OC1_HOST.test(host)) return { host, realmDomain: "oraclecloud.com", knownRealm: true };
  const realm = REALM_HOST.exec(host)?.[1];
  if (realm === undefined) return undefined;
  return { host, realmDomain: realm, knownRealm: REALM_DOMAINS.has(realm) };
}

/**
 * The one place that decides which hosts may receive a token (a security token, a docker token or
 * the registry's access token): an OCIR host (see {@linkcode ocirHost}) of a known OCI realm, or of
 * the node's own realm (dedicated regions no table lists). Every path that sends a token asks it
 * first; anything else is refused before a connection is opened.
 *
 * @example
 * ```ts
 * trustedRegistry("iad.ocir.io", "oraclecloud.com", "OCIR token").host; // "iad.ocir.io"
 * trustedRegistry("ocir.x-1.oci.evil.com", "oraclecloud.com", "OCIR token"); // throws REFUSED
 * ```
 */
export function trustedRegistry(host: string, nodeRealmDomain: string, step: Step): OcirHost {
  const registry = ocirHost(host);
  if (!registry) {
    throw new PluginError(
      step,
      "REFUSED",
      `${host} is not an OCIR registry host: no token is sent there`,
      {
        host,
      },
    );
  }
  if (registry.knownRealm || registry.realmDomain === nodeRealmDomain) return registry;
  throw new PluginError(
    step,
    "REFUSED",
    `${registry.host} is in realm domain ${registry.realmDomain}, which is neither a known OCI realm nor this node's (${nodeRealmDomain}): no token is sent there`,
    { host: registry.host },
  );
}

/**
 * The OCIR host names of a region, its most used one first: `<key>.ocir.io`, `<region>.ocir.io`
 * and `ocir.<region>.oci.oraclecloud.com` in oc1; `ocir.<region>.oci.<realm domain>` elsewhere.
 *
 * @example
 * ```ts
 * regionRegistryHosts({ regionKey: "iad", regionId: "us-ashburn-1", realmKey: "oc1", realmDomain: "oraclecloud.com" });
 * // ["iad.ocir.io", "us-ashburn-1.ocir.io", "ocir.us-ashburn-1.oci.oraclecloud.com"]
 * ```
 */
export function regionRegistryHosts(region: Region): string[] {
  const realmHost = `ocir.${region.regionId}.oci.${region.realmDomain}`;
  return region.realmKey === "oc1"
    ? [`${region.regionKey.toLowerCase()}.ocir.io`, `${region.regionId}.ocir.io`, realmHost]
    : [realmHost];
}
