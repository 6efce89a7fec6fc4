import assert from "node:assert/strict";
import { findRegion, REALM_DOMAINS, REGIONS } from "../lib/regions.ts";

Deno.test("the region table equals the reference regions.tsv", async () => {
  const rows = (await Deno.readTextFile(new URL("./fixtures/regions.tsv", import.meta.url))).trim()
    .split("\n");
  assert.deepEqual(rows[0].split("\t"), [
    "regionKey",
    "regionIdentifier",
    "realmKey",
    "realmDomainComponent",
  ]);
  const expected = rows.slice(1).map((row) => {
    const [regionKey, regionId, realmKey, realmDomain] = row.split("\t");
    return { regionKey, regionId, realmKey, realmDomain };
  });
  assert.deepEqual(REGIONS, expected);
});

Deno.test("findRegion finds by short code in any case and by identifier", () => {
  assert.equal(findRegion("IAD")?.regionId, "us-ashburn-1");
  assert.equal(findRegion("phx")?.regionId, "us-phoenix-1");
  assert.equal(findRegion(" eu-frankfurt-1\n")?.regionKey, "fra");
  assert.equal(findRegion("uk-gov-london-1")?.realmDomain, "oraclegovcloud.uk");
  assert.equal(findRegion("nowhere-1"), undefined);
  assert.ok(REALM_DOMAINS.has("oraclecloud.eu") && !REALM_DOMAINS.has("example.com"));
});
