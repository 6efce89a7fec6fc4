/** Region facts and the OCI host names served for each region. */
import { realmKeyOfDomain, REGIONS } from "./regions.ts";

/** Everything the emulator knows about one region. */
export interface RegionInfo {
  regionId: string;
  /** Upper case, e.g. "IAD". */
  regionKey: string;
  realmKey: string;
  realmDomain: string;
}

/** A region as a caller names it; keys come from the table when the region is known. */
export interface RegionSpec {
  regionId: string;
  realmDomain?: string;
  regionKey?: string;
  realmKey?: string;
}

/** Completes a region spec from the table; throws when a dedicated region lacks its keys. */
export function resolveRegion(spec: RegionSpec): RegionInfo {
  const known = REGIONS.get(spec.regionId);
  const realmDomain = spec.realmDomain ?? known?.realmDomain ?? "oraclecloud.com";
  const regionKey = (spec.regionKey ?? known?.regionKey)?.toUpperCase();
  if (!regionKey) {
    throw new Error(`region ${spec.regionId} is not in the table: pass regionKey`);
  }
  const realmKey = spec.realmKey ??
    (known?.realmDomain === realmDomain ? known.realmKey : realmKeyOfDomain(realmDomain));
  if (!realmKey) throw new Error(`realm of ${realmDomain} is unknown: pass realmKey`);
  return { regionId: spec.regionId, regionKey, realmKey, realmDomain };
}

/** Which service a host name belongs to. */
export interface HostEntry {
  host: string;
  service: "auth" | "ocir" | "idcs";
  region: RegionInfo;
}

/**
 * The hosts of one region: its auth service and every registry host form
 * (`ocir.<region>.oci.<domain>` everywhere; `<key>.ocir.io` and `<region>.ocir.io` in oc1's
 * domain only).
 */
export function regionHosts(region: RegionInfo): HostEntry[] {
  const { regionId, regionKey, realmDomain } = region;
  const registry = [`ocir.${regionId}.oci.${realmDomain}`];
  if (realmDomain === "oraclecloud.com") {
    registry.unshift(`${regionKey.toLowerCase()}.ocir.io`, `${regionId}.ocir.io`);
  }
  return [
    { host: `auth.${regionId}.${realmDomain}`, service: "auth", region },
    ...registry.map((host) => ({ host, service: "ocir" as const, region })),
  ];
}
