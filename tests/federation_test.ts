import assert from "node:assert/strict";
import { PluginError } from "../lib/errors.ts";
import { decodeSecurityToken, federationUrl } from "../lib/federation.ts";
import { findRegion } from "../lib/regions.ts";

const jwt = (claims: unknown, payload = btoa(JSON.stringify(claims))) =>
  `eyJhbGciOiJSUzI1NiJ9.${
    payload.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")
  }.c2ln`;
const now = 1_800_000_000;

Deno.test("federationUrl: the region's auth host, or the override as a base URL", () => {
  assert.equal(
    federationUrl(findRegion("iad")!).href,
    "https://auth.us-ashburn-1.oraclecloud.com/v1/x509",
  );
  assert.equal(
    federationUrl(findRegion("uk-gov-london-1")!).href,
    "https://auth.uk-gov-london-1.oraclegovcloud.uk/v1/x509",
  );
  assert.equal(
    federationUrl(findRegion("iad")!, "https://auth.example/").href,
    "https://auth.example/v1/x509",
  );
  assert.equal(
    federationUrl(findRegion("iad")!, "https://auth.example/v1/x509").href,
    "https://auth.example/v1/x509",
  );
  assert.equal(
    federationUrl(findRegion("iad")!, " ").href,
    "https://auth.us-ashburn-1.oraclecloud.com/v1/x509",
  );
});

Deno.test("decodeSecurityToken reads exp and iat, without verifying", () => {
  const decoded = decodeSecurityToken(
    jwt({ exp: now + 1200, iat: now, sub: "ocid1.instance.x", "opc-tenant": "t" }),
    "h",
    now,
  );
  assert.equal(decoded.expiresAt, now + 1200);
  assert.equal(decoded.issuedAt, now);
  assert.equal(decoded.claims.sub, "ocid1.instance.x");
  assert.equal(decodeSecurityToken(jwt({ exp: now + 60 }), "h", now).issuedAt, now, "no iat: now");
});

Deno.test("decodeSecurityToken refuses what is not a live JWT, as a federation error", () => {
  const table: [string, RegExp][] = [
    ["", /is not a JWT/],
    ["a.b", /is not a JWT/],
    ["a.b.c.d", /is not a JWT/],
    [jwt(null, "!!!"), /unreadable payload/],
    [jwt(null, btoa("not json")), /unreadable payload/],
    [jwt({ iat: now }), /has no expiry/],
    [jwt({ exp: "soon" }), /has no expiry/],
    [jwt({ exp: now }), /expired at 2027-01-15T08:00:00.000Z/],
  ];
  for (const [token, pattern] of table) {
    assert.throws(
      () => decodeSecurityToken(token, "auth.example", now),
      (e) =>
        e instanceof PluginError && e.step === "federation" && e.host === "auth.example" &&
        pattern.test(e.message),
      token,
    );
  }
});
