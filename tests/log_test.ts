import assert from "node:assert/strict";
import { createLogger, formatLine, redact } from "../lib/log.ts";
import { PluginError } from "../lib/errors.ts";
import { generateSessionKey } from "../lib/federation.ts";
import fc from "fast-check";

Deno.test("redact removes JWTs, ST$ key ids, PEM blocks and long base64", () => {
  const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvY2lkMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
  const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----";
  const blob = "A".repeat(120);
  const text = redact(
    `a ${jwt} b keyId="ST$${jwt}" ${pem} ${blob} -----BEGIN CERTIFICATE-----\nMIIB`,
  );
  for (const secret of [jwt, "MIIEow", blob, "MIIB", "eyJ"]) {
    assert.ok(!text.includes(secret), `${secret} in ${text}`);
  }
  assert.equal(
    redact("HTTP 401 NotAuthenticated: bad date"),
    "HTTP 401 NotAuthenticated: bad date",
  );
});

Deno.test("formatLine makes one line with level, step and host", () => {
  assert.equal(
    formatLine("error", "OCIR token", 'HTTP 403 "denied"\nnext', "iad.ocir.io"),
    `oke-credential-provider level=error step=OCIR-token host=iad.ocir.io msg="HTTP 403 'denied' next"`,
  );
});

Deno.test("createLogger writes only at its level and quieter", () => {
  for (const [level, count] of [["error", 1], ["warn", 2], ["info", 3], ["debug", 4]] as const) {
    const lines: string[] = [];
    const log = createLogger(level, (l) => lines.push(l));
    log.error("cache", "e");
    log.warn("cache", "w");
    log.info("cache", "i");
    log.debug("cache", "d");
    assert.equal(lines.length, count, level);
  }
});

Deno.test("failure logs a PluginError with its hint and anything else as an internal error", () => {
  const lines: string[] = [];
  const log = createLogger("error", (l) => lines.push(l));
  log.failure(
    new PluginError("federation", "HTTP_STATUS", "HTTP 401", {
      host: "auth.x",
      hint: "check the clock",
    }),
  );
  log.failure(new TypeError("boom\nat stack"));
  assert.deepEqual(lines, [
    `oke-credential-provider level=error step=federation host=auth.x msg="HTTP 401 (check the clock)"`,
    `oke-credential-provider level=error step=request msg="internal error: TypeError: boom at stack"`,
  ]);
});

/** Base64 (or base64url, unpadded) of bytes, as keys, certificates and tokens travel. */
function base64(bytes: Uint8Array, url = false): string {
  const b64 = btoa(String.fromCharCode(...bytes));
  return url ? b64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "") : b64;
}

Deno.test("redact keeps long file paths readable", () => {
  const paths = [
    "/var/lib/oke-credential-provider/test-1a2b3c4d/a-rather-long-test-name-for-the-cache/docker-iad",
    "/tmp/okecp-0f1e2d3c/t-9a8b7c6d/session-cache-of-the-always-warm-refresher-test/sessions",
    "/var/lib/containers/storage/overlay/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/diff",
    "/home/opc/Projects/OKE/oke-credential-provider/tests/fixtures/signing-vectors/rsa_2048_pkcs8",
    "/run/user/1000/deno-test_cache_with_underscores_and-dashes/sub/dir/with/many/short/names",
  ];
  for (const path of paths) {
    assert.ok(path.length >= 80, path);
    assert.equal(redact(path), path);
    const message = `cache directory ${path}.json is not writable: Permission denied`;
    assert.equal(redact(message), message);
    assert.ok(formatLine("warn", "cache", message).includes(path), path);
  }
});

Deno.test("redact: a secret's shape is replaced as before, wherever it stands", async () => {
  const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvY2lkMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
  const pem = "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----";
  const { privateKey, publicKey } = await generateSessionKey();
  const pkcs8 = base64(new Uint8Array(await crypto.subtle.exportKey("pkcs8", privateKey)));
  const spki = base64(new Uint8Array(await crypto.subtle.exportKey("spki", publicKey)));
  const table: [string, string][] = [
    [`token ${jwt} refused`, "token [JWT redacted] refused"],
    [`keyId="ST$${jwt}"`, 'keyId="ST$[redacted]"'],
    [`bad key ${pem} here`, "bad key [PEM redacted] here"],
    [`-----BEGIN PRIVATE KEY-----\n${pkcs8}`, "[PEM redacted]"],
    [`key ${pkcs8} end`, "key [base64 redacted] end"],
    [`key=${spki}`, "key=[base64 redacted]"],
    [`/var/lib/oke-credential-provider/${spki}`, "[base64 redacted]"],
    [`/${pkcs8}`, "[base64 redacted]"],
    [`${"A".repeat(120)}`, "[base64 redacted]"],
    // `eyJ` inside a blob, a '.' after it: the whole blob goes, not only a JWT-shaped tail.
    [`${"A".repeat(30)}eyJ${"B".repeat(60)}.json`, "[JWT redacted]"],
    // A JWT right after a base64 character ('+', '/') is redacted all the same.
    [`+${jwt}`, "[JWT redacted]"],
    [`/${"abc/".repeat(30)}+x`, "[base64 redacted]"],
    ["HTTP 401 NotAuthenticated: bad date", "HTTP 401 NotAuthenticated: bad date"],
  ];
  for (const [input, expected] of table) assert.equal(redact(input), expected, input);
});

Deno.test("redact: base64 of random bytes never survives, even after a path", () => {
  // 60 bytes are the fewest whose base64 reaches the 80 characters the rule starts at; every
  // secret shape we handle is longer (a DER key or certificate, a token's signature part).
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 60, maxLength: 2048 }),
      fc.boolean(),
      fc.constantFrom("", "key ", "/", "/var/lib/oke-credential-provider/", "/tmp/okecp-1a2b/"),
      fc.constantFrom("", ".json", " end", "/docker-iad"),
      (bytes, url, before, after) => {
        const secret = base64(bytes, url);
        const out = redact(`${before}${secret}${after}`);
        for (let i = 0; i + 20 <= secret.length; i += 10) {
          assert.ok(!out.includes(secret.slice(i, i + 20)), `${secret} in ${out}`);
        }
      },
    ),
    { numRuns: 3000 },
  );
});
