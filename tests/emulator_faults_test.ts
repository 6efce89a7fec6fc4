/**
 * Faults on demand: status queues (with Retry-After), latency, hangs, dropped connections,
 * malformed bodies and clock skew, per service or per path; each shows in the request log.
 */
import assert from "node:assert/strict";
import { startEmulator } from "./emulator/mod.ts";
import { emulatorTest } from "./support/emulator.ts";
import {
  federationBody,
  federationKeyId,
  fetchIdentity,
  sessionKeyPair,
  signedFetch,
} from "./emulator/client.ts";

const AUTH = "https://auth.us-ashburn-1.oraclecloud.com/v1/x509";

emulatorTest(
  "faults: statuses, latency, hang, drop, malformed body, clock skew",
  async (t, { emu, client }) => {
    const base = emu.env.OCI_METADATA_BASE_URL;
    const imds = (path: string) =>
      fetch(`${base}/${path}`, { headers: { authorization: "Bearer Oracle" } });
    const id = await fetchIdentity(base);
    const { spki } = await sessionKeyPair();
    const federate = async (time?: number) =>
      signedFetch(client, {
        method: "POST",
        url: AUTH,
        keyId: await federationKeyId(id),
        privateKey: id.leafKey,
        body: federationBody(id, spki),
        time,
      });
    const step = (name: string, fn: () => Promise<void> | void) =>
      t.step(name, async () => {
        try {
          await fn();
        } finally {
          emu.clearFaults();
          emu.latency({});
        }
      });
    await step("a status queue is consumed one per request, with Retry-After", async () => {
      emu.fault("auth", { status: [500, 429], retryAfter: 7 });
      const first = await federate();
      assert.equal(first.status, 500);
      assert.equal((await first.json()).code, "InternalServerError");
      const second = await federate();
      assert.equal(second.status, 429);
      assert.equal(second.headers.get("retry-after"), "7");
      assert.equal((await second.json()).code, "TooManyRequests");
      const third = await federate();
      assert.equal(third.status, 200);
      await third.body?.cancel();
      const log = emu.requests.filter((e) => e.service === "auth").slice(-3);
      assert.deepEqual(log.map((e) => [e.status, e.reason]), [
        [500, "fault: status 500"],
        [429, "fault: status 429"],
        [200, undefined],
      ]);
      assert.equal(emu.counters.federations, 1);
    });
    await step("a path fault hits that path only; the most specific fault wins", async () => {
      emu.fault("imds:identity/key.pem", { status: [404, 401] });
      emu.fault("imds", { status: [503] });
      assert.equal(
        (await (await imds("identity/key.pem")).body?.cancel(), emu.requests.at(-1)?.status),
        404,
      );
      assert.equal((await imds("identity/cert.pem")).status, 503);
      assert.equal((await imds("identity/key.pem")).status, 401);
      assert.equal((await imds("identity/key.pem")).status, 200);
      assert.equal((await imds("identity/cert.pem")).status, 200);
      emu.clearFaults();
    });
    await step("latency delays without changing the answer", async () => {
      emu.fault("imds:instance/region", { latencyMs: 30 });
      emu.latency({ imds: 10, auth: 10, ocir: 10 });
      assert.equal(await (await imds("instance/region")).text(), "iad");
      emu.latency({});
      emu.clearFaults();
    });
    await step("hang: no answer until the client gives up", async () => {
      emu.fault("ocir", { hang: true });
      await assert.rejects(
        fetch("https://iad.ocir.io/20180419/docker/token", {
          client,
          signal: AbortSignal.timeout(300),
        }),
        (e: Error) => e.name === "TimeoutError",
      );
      const entry = emu.requests.findLast((e) => e.service === "ocir");
      assert.deepEqual([entry?.status, entry?.reason], [0, "fault: hang"]);
      emu.clearFaults();
      const res = await fetch("https://iad.ocir.io/20180419/docker/token", { client });
      assert.equal(res.status, 401);
      await res.body?.cancel();
    });
    await step("drop: the connection closes without an answer (IMDS and HTTPS)", async () => {
      emu.fault("imds", { drop: true });
      await assert.rejects(imds("identity/cert.pem"), TypeError);
      emu.fault("auth", { drop: true });
      await assert.rejects(federate(), TypeError);
      // A client may retry a dropped idempotent request once on a fresh connection (hyper does).
      const drops = emu.requests.filter((e) => e.reason === "fault: drop").map((e) => e.service);
      assert.deepEqual(new Set(drops), new Set(["imds", "auth"]));
      emu.clearFaults();
      assert.equal((await imds("instance/region")).status, 200);
      const res = await federate();
      assert.equal(res.status, 200, "a new connection works again");
      await res.body?.cancel();
    });
    await step("malformed body: same status, broken content", async () => {
      emu.fault("imds:instance/regionInfo/", { body: '{"realmKey":"oc1",' });
      const res = await imds("instance/regionInfo/");
      assert.equal(res.status, 200);
      await assert.rejects(res.json(), SyntaxError);
      emu.fault("auth", { body: "<html>oops</html>" });
      const fed = await federate();
      assert.equal(fed.status, 200);
      assert.equal(await fed.text(), "<html>oops</html>");
      emu.clearFaults();
    });
    await step("clock skew: the service's clock, dates and issued times shift", async () => {
      emu.fault("auth", { clockSkewSec: 600 });
      const late = await federate();
      assert.equal(late.status, 401);
      assert.match((await late.json()).message, /-60[01] s off the service clock/);
      const served = Date.parse(late.headers.get("date")!);
      assert.ok(
        Math.abs(served - (Date.now() + 600_000)) < 5_000,
        "Date header on the service clock",
      );
      const matched = await federate(Date.now() + 600_000);
      assert.equal(matched.status, 200);
      const claims = JSON.parse(
        new TextDecoder().decode(
          Uint8Array.fromBase64((await matched.json()).token.split(".")[1], {
            alphabet: "base64url",
          }),
        ),
      );
      assert.ok(
        Math.abs(claims.iat * 1000 - (Date.now() + 600_000)) < 5_000,
        "iat on the service clock",
      );
      emu.clearFaults();
    });
    await step("unknown endpoints are refused", () => {
      assert.throws(() => emu.fault("registry", { status: [500] }), /unknown fault endpoint/);
    });
  },
);

Deno.test({
  name: "close() ends hung requests and frees everything",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const emu = await startEmulator();
    emu.fault("imds", { hang: true });
    const pending = fetch(`${emu.env.OCI_METADATA_BASE_URL}/identity/cert.pem`, {
      headers: { authorization: "Bearer Oracle" },
    }).then(() => "answered", () => "failed");
    while (!emu.requests.some((e) => e.reason === "fault: hang")) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await emu.close();
    assert.equal(await pending, "failed");
    await assert.rejects(fetch(`${emu.env.OCI_METADATA_BASE_URL}/instance/region`));
    await assert.rejects(Deno.stat(emu.caFile));
  },
});
