/**
 * Known OCI regions (regionKey, regionIdentifier, realmKey, realmDomainComponent), used to
 * derive region keys, realm keys and host names. Dedicated regions are not listed: callers
 * pass their keys explicitly.
 */

/** One known region. */
export interface Region {
  regionKey: string;
  regionId: string;
  realmKey: string;
  realmDomain: string;
}

// The project's copy of the reference table, read here rather than imported from lib/: the
// emulator shares no code with the plugin it judges.
const TABLE = await Deno.readTextFile(new URL("../fixtures/regions.tsv", import.meta.url));

/** Every known region, keyed by region identifier (e.g. "us-ashburn-1"). */
export const REGIONS: ReadonlyMap<string, Region> = new Map(
  TABLE.trim().split("\n").slice(1).map((line) => {
    const [key, regionId, realmKey, realmDomain] = line.split("\t");
    return [regionId, { regionKey: key.toUpperCase(), regionId, realmKey, realmDomain }];
  }),
);

/** The realm key of a realm domain, when exactly one realm uses it (oc2 and oc3 share one). */
export function realmKeyOfDomain(domain: string): string | undefined {
  const keys = new Set(
    [...REGIONS.values()].filter((r) => r.realmDomain === domain).map((r) => r.realmKey),
  );
  return keys.size === 1 ? [...keys][0] : undefined;
}
