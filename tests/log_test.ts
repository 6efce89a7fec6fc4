import assert from "node:assert/strict";
import { createLogger, formatLine, redact } from "../lib/log.ts";
import { PluginError } from "../lib/errors.ts";

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
