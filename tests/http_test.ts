/** Every network call (lib/http.ts): retries, Retry-After, timeouts, the deadline, errors. */
import assert from "node:assert/strict";
import { deadline } from "../lib/deadline.ts";
import { call, readJson } from "../lib/http.ts";
import { createLogger } from "../lib/log.ts";
import { PluginError } from "../lib/errors.ts";

/** A loopback server answering from a queue of handlers; the last one repeats. */
function serve(...handlers: ((req: Request) => Response | Promise<Response>)[]) {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const handler = handlers[Math.min(hits, handlers.length - 1)];
    hits++;
    return handler(req);
  });
  return {
    url: new URL(`http://127.0.0.1:${server.addr.port}/opc/v2/x`),
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

/** Never answers, until the client gives up (so that the server can shut down). */
const hang = (req: Request) =>
  new Promise<Response>((resolve) =>
    req.signal.addEventListener("abort", () => resolve(new Response("")))
  );

const log = createLogger("debug", () => {});
const options = (seconds = 10) => ({
  step: "IMDS" as const,
  deadline: deadline(seconds),
  log,
  retryOn: [404, 429, 503],
});
const get = () => ({ headers: { authorization: "Bearer Oracle" } });

Deno.test("call retries retryable statuses and returns the first success", async () => {
  const s = serve(
    () => new Response("", { status: 503 }),
    () => new Response("", { status: 404 }),
    () => new Response("ok"),
  );
  const response = await call(s.url, get, options());
  assert.equal(await response.text(), "ok");
  assert.equal(s.hits(), 3);
  await s.close();
});

Deno.test("call honours Retry-After", async () => {
  const s = serve(
    () => new Response("", { status: 429, headers: { "retry-after": "1" } }),
    () => new Response("ok"),
  );
  const started = Date.now();
  await (await call(s.url, get, options())).text();
  assert.ok(Date.now() - started >= 950, "waited the second Retry-After asked for");
  assert.equal(s.hits(), 2);
  await s.close();
});

Deno.test("call fails at once when Retry-After is beyond the deadline", async () => {
  const s = serve(() => new Response("", { status: 429, headers: { "retry-after": "120" } }));
  await assert.rejects(call(s.url, get, options(5)), /HTTP 429; no time left to retry/);
  assert.equal(s.hits(), 1);
  await s.close();
});

Deno.test("call never retries other statuses and reports the service's words and the hint", async () => {
  const s = serve(() =>
    Response.json({
      code: "NotAuthenticated",
      message: "The required information to complete authentication was not provided",
    }, { status: 401 })
  );
  await assert.rejects(
    call(s.url, get, {
      ...options(),
      hint: (status) => status === 401 ? "check the clock" : undefined,
    }),
    (e) =>
      e instanceof PluginError && e.status === 401 && e.step === "IMDS" && e.host === s.url.host &&
      e.message ===
        `IMDS ${s.url.host}: HTTP 401 NotAuthenticated: The required information to complete authentication was not provided (check the clock)`,
  );
  assert.equal(s.hits(), 1);
  await s.close();
});

Deno.test("call retries connection failures, then names the cause", async () => {
  const s = serve(() => new Response("ok"));
  const url = s.url;
  await s.close();
  await assert.rejects(
    call(url, get, { ...options(), attempts: 2 }),
    (e) =>
      e instanceof PluginError && e.code === "NETWORK" &&
      /request failed: .*refused/i.test(e.message),
  );
});

Deno.test("call times out a hung attempt, retries, and reports the deadline by step", async () => {
  const once = serve(hang, () => new Response("late but fine"));
  const response = await call(once.url, get, { ...options(10), attemptTimeoutMs: 300 });
  assert.equal(await response.text(), "late but fine");
  await once.close();
  const always = serve(hang);
  await assert.rejects(
    call(always.url, get, { ...options(1), attemptTimeoutMs: 300 }),
    (e) =>
      e instanceof PluginError && e.code === "TIMEOUT" &&
      /^IMDS 127\.0\.0\.1:\d+: the invocation's deadline ran out/.test(e.message),
  );
  await always.close();
});

Deno.test("call refuses plain HTTP for every step but IMDS, before sending anything", async () => {
  const s = serve(() => new Response("ok"));
  for (const step of ["federation", "OCIR token", "manifest check"] as const) {
    await assert.rejects(
      call(s.url, get, { ...options(), step }),
      /refusing plain http: .* only HTTPS/,
    );
  }
  assert.equal(s.hits(), 0);
  await s.close();
});

Deno.test("readJson names what came instead of a JSON object", async () => {
  const s = serve(
    () => new Response("<html>busy</html>", { headers: { "content-type": "text/html" } }),
    () => Response.json([1]),
    () => Response.json({ a: 1 }),
  );
  for (
    const expected of [/17 bytes of text\/html that are not a JSON object/, /not a JSON object/]
  ) {
    await assert.rejects(readJson(await fetch(s.url), "federation"), expected);
  }
  assert.deepEqual(await readJson(await fetch(s.url), "federation"), { a: 1 });
  await s.close();
});

Deno.test("retries are logged at info level with the attempt count", async () => {
  const lines: string[] = [];
  const s = serve(() => new Response("", { status: 503 }), () => new Response("ok"));
  const logged = createLogger("debug", (l) => lines.push(l));
  await (await call(s.url, get, { ...options(), log: logged })).text();
  await s.close();
  assert.ok(
    lines.some((l) =>
      /level=info step=IMDS host=127\.0\.0\.1:\d+ msg="HTTP 503; retrying in \d+ ms \(attempt 2 of 5\)"/
        .test(l)
    ),
    lines.join("\n"),
  );
});
