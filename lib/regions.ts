/**
 * OCI's public regions and realms, from the project's reference table. IMDS's
 * `instance/regionInfo/` is preferred (it knows dedicated regions no table lists); this table is
 * the fallback for older metadata services and the list of realm domains whose registry hosts we
 * trust before we know the node's own realm.
 *
 * @module
 */

// Rows of regionKey, regionId, realmKey, realmDomain, as data (tests/regions_test.ts checks them
// against the reference regions.tsv).
import TABLE from "./regions.json" with { type: "json" };

/** One region of OCI. */
export interface Region {
  /** Short code, lower-case: `iad`. */
  regionKey: string;
  /** Region identifier: `us-ashburn-1`. */
  regionId: string;
  /** Realm key: `oc1`. */
  realmKey: string;
  /** Realm domain component: `oraclecloud.com`. */
  realmDomain: string;
}

/** Every region of the table. */
export const REGIONS: readonly Region[] = TABLE.map((
  [regionKey, regionId, realmKey, realmDomain],
) => ({ regionKey, regionId, realmKey, realmDomain }));

/** The realm domains of every known realm. */
export const REALM_DOMAINS: ReadonlySet<string> = new Set(REGIONS.map((r) => r.realmDomain));

/**
 * Finds a region by its short code (any case) or its identifier.
 *
 * @example
 * ```ts
 * findRegion("IAD")?.regionId; // "us-ashburn-1"
 * findRegion("eu-frankfurt-1")?.realmDomain; // "oraclecloud.com"
 * ```
 */
export function findRegion(name: string): Region | undefined {
  const n = name.trim().toLowerCase();
  return REGIONS.find((r) => r.regionKey === n || r.regionId === n);
}
