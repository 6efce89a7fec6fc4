/**
 * The fault-injection suite's shared parts (issue 5): a plugin process the tests can kill, the
 * scenarios (a fault on the emulator, a request, and what the operator must read in kubelet's
 * log), the runner that checks each one, and the watch that proves stderr never holds a secret.
 * faults_test.ts runs every scenario at the default log level, secrets_test.ts again at debug.
 */
import assert from "node:assert/strict";
import type { Level } from "../../lib/log.ts";
import type { Emulator, RequestLogEntry } from "../emulator/mod.ts";
import { pkcs1Pem, rsaKeyPair } from "../emulator/pki.ts";
import {
  kubeletRequest,
  makeCacheDir,
  type PluginRun as Run,
  startPlugin,
} from "./plugin_process.ts";
import { dropOnce, type Rig } from "./emulator.ts";

/** The image of most scenarios. */
export const appImage = (emu: Emulator) => `iad.ocir.io/${emu.namespace}/app:1`;

/** One line of the plugin's stderr: level, step, host, message, nothing else (no stack trace). */
export const LOG_LINE =
  /^oke-credential-provider level=(error|warn|info|debug) step=[A-Za-z-]+(?: host=[^\s"]+)? msg="[^"]*"$/;

/** What a scenario must end with. */
export type Outcome =
  /** Credentials for the image's registry; at most the one warning given. */
  | { ok: true; warn?: RegExp }
  /** An answer with no credentials (not an OCIR host), a warning, and not a single request. */
  | { foreign: true }
  /** Exit 1, nothing on stdout, and exactly one error line, at this step, matching `line`. */
  | { step: string; line: RegExp };

/** A fault, the request made under it, and what the operator must see. */
export interface Scenario {
  name: string;
  /** Sets faults up (after clearFaults()); `cacheDir` is fresh and empty. */
  arrange?(rig: Rig, cacheDir: string): void | Promise<void>;
  /** The image asked for; default {@linkcode appImage}. */
  image?: string | ((emu: Emulator) => string);
  /** `--timeout`, seconds (default 15); the safety net kills the process 10 s after it. */
  timeout?: number;
  /** `--cache-dir` instead of the fresh directory. */
  cacheDir?: string;
  /** Log level when the scenario must see info lines (its retries); runners may raise it. */
  level?: Level;
  /** Environment changes (an undefined value removes the variable). */
  env?: (emu: Emulator) => Record<string, string | undefined>;
  expect: Outcome;
  /** Further checks on the run and on its share of the request log. */
  check?(run: Run, requests: RequestLogEntry[], emu: Emulator): void;
  /** Undoes what arrange changed beyond faults (the leaf certificate). */
  restore?(emu: Emulator): Promise<void>;
}

/** How a runner runs a scenario. */
export interface RunOptions {
  /** The log level (default warn); a scenario that needs a more verbose one gets it. */
  level?: Level;
  /** Environment added to every run (e.g. HTTP_PROXY, to catch plain HTTP). */
  env?: Record<string, string>;
  /** The request JSON for an image (default: kubelet's plain request). */
  request?: (image: string) => string;
  /** Called with the run and its cache directory before the directory is removed. */
  inspect?(run: Run, cacheDir: string): void | Promise<void>;
}

const LEVEL_RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/**
 * Runs one scenario on the rig, asserts its outcome, and returns the run with its share of
 * the request log.
 */
export async function runScenario(
  rig: Rig,
  scenario: Scenario,
  options: RunOptions = {},
): Promise<{ run: Run; requests: RequestLogEntry[]; image: string }> {
  const { emu } = rig;
  emu.clearFaults();
  rig.hooks.clear();
  const dir = await makeCacheDir("fault-");
  try {
    await scenario.arrange?.(rig, dir);
    // The more verbose of the two: a scenario that checks its info lines needs at least info.
    const levels = [options.level ?? "warn", scenario.level ?? "warn"];
    const level = levels.reduce((a, b) => LEVEL_RANK[a] >= LEVEL_RANK[b] ? a : b);
    const timeout = scenario.timeout ?? 15;
    const image = typeof scenario.image === "function"
      ? scenario.image(emu)
      : scenario.image ?? appImage(emu);
    const mark = emu.requests.length;
    const run = await startPlugin({
      stdin: (options.request ?? kubeletRequest)(image),
      env: { ...emu.env, ...options.env, ...scenario.env?.(emu) },
      args: [
        "--cache-dir",
        scenario.cacheDir ?? dir,
        "--timeout",
        String(timeout),
        "--log-level",
        level,
      ],
      killAfterMs: (timeout + 10) * 1000,
    }).done;
    const requests = emu.requests.slice(mark);
    const context = `${scenario.name} (log level ${level})\n--- stderr:\n${run.stderr}`;
    assert.equal(run.signal, null, `still running ${timeout + 10} s in: ${context}`);
    assertOutcome(scenario.expect, run, image, level, requests, context);
    scenario.check?.(run, requests, emu);
    await options.inspect?.(run, dir);
    return { run, requests, image };
  } finally {
    emu.clearFaults();
    rig.hooks.clear();
    await scenario.restore?.(emu);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function assertOutcome(
  expect: Outcome,
  run: Run,
  image: string,
  level: Level,
  requests: RequestLogEntry[],
  context: string,
): void {
  const lines = run.stderr === "" ? [] : run.stderr.replace(/\n$/, "").split("\n");
  for (const line of lines) {
    assert.match(line, LOG_LINE, context);
    // No control or format character (a bidi override, an escape sequence) reaches the log raw.
    assert.doesNotMatch(line, /\p{C}/u, context);
  }
  const at = (l: Level) => lines.filter((line) => line.includes(` level=${l} `));
  const verbose = LEVEL_RANK[level] > LEVEL_RANK.warn;
  if ("step" in expect) {
    assert.equal(run.code, 1, context);
    assert.equal(run.stdout, "", context);
    const errors = at("error");
    assert.equal(errors.length, 1, `one error line: ${context}`);
    assert.equal(errors[0], lines.at(-1), `the error line comes last: ${context}`);
    if (!verbose) assert.equal(lines.length, 1, `one line only: ${context}`);
    assert.ok(errors[0].includes(` step=${expect.step.replaceAll(" ", "-")} `), context);
    assert.match(errors[0], expect.line, context);
    return;
  }
  assert.equal(run.code, 0, context);
  assert.deepEqual(at("error"), [], context);
  const registry = image.split("/")[0];
  const response = run.response;
  assert.ok(response, `a response on stdout: ${context}`);
  assert.equal(response.kind, "CredentialProviderResponse", context);
  if ("foreign" in expect) {
    assert.deepEqual(response.auth, {}, context);
    assert.equal(response.cacheDuration, "0s", context);
    assert.equal(at("warn").length, 1, context);
    assert.match(at("warn")[0], /is not an OCIR registry host: answering with no credentials/);
    assert.deepEqual(requests, [], `nothing sent anywhere: ${context}`);
    return;
  }
  assert.deepEqual(Object.keys(response.auth), [registry], context);
  assert.equal(response.auth[registry].username, "BEARER_TOKEN", context);
  assert.ok(response.auth[registry].password, context);
  const warns = at("warn");
  if (expect.warn) {
    assert.equal(warns.length, 1, context);
    assert.match(warns[0], expect.warn, context);
  } else assert.deepEqual(warns, [], context);
  if (!verbose) assert.equal(lines.length, warns.length, `silent but for warnings: ${context}`);
}

// ---------------------------------------------------------------------------------------------
// Material the scenarios plant in answers: each must never come back out on stderr.

const b64url = (text: string) =>
  new TextEncoder().encode(text).toBase64({ alphabet: "base64url", omitPadding: true });

/** A JWT-shaped token with these claims and a random signature (nobody verifies it). */
export function fakeJwt(claims: Record<string, unknown>): string {
  const signature = crypto.getRandomValues(new Uint8Array(256))
    .toBase64({ alphabet: "base64url", omitPadding: true });
  return `${b64url('{"alg":"RS256","typ":"JWT","kid":"planted"}')}.${
    b64url(JSON.stringify(claims))
  }.${signature}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** Secrets the scenarios put into answers, for the secrets watch. */
export const PLANTED = {
  /** A token as OCIR would answer it (used with bad `expires_in` values). */
  dockerToken: fakeJwt({ iss: "ocir", exp: now() + 3600, aud: "iad.ocir.io", planted: 1 }),
  /** A security token that expired an hour ago. */
  expiredToken: fakeJwt({ iss: "authService.oracle.com", iat: now() - 4800, exp: now() - 3600 }),
  /** A security token with no `exp`. */
  timelessToken: fakeJwt({ iss: "authService.oracle.com", iat: now() }),
  /** A security token quoted back in an error message. */
  echoedToken: fakeJwt({ iss: "authService.oracle.com", exp: now() + 1200, echo: true }),
  /** Base64 key material quoted back in an error message, past the point where it is cut. */
  echoedKey: crypto.getRandomValues(new Uint8Array(600)).toBase64(),
  /** A service-account token kubelet passes with KEP-4412 (the plugin has no use for it). */
  serviceAccountToken: fakeJwt({
    iss: "https://kubernetes.default.svc",
    sub: "system:serviceaccount:ns:sa",
  }),
  /** A private key PEM that is not the instance's. */
  otherKeyPem: await pkcs1Pem((await rsaKeyPair()).privateKey),
};

// ---------------------------------------------------------------------------------------------
// The secrets watch.

/** Pieces this long of a secret are what stderr must never hold. */
const WINDOW = 20;

/**
 * Every secret seen so far (the instance's PEMs, the tokens and session keys runs produced, what
 * the scenarios planted) and the check that a stderr holds no 20-character piece of any of them.
 */
export class SecretWatch {
  #pieces = new Map<string, string>();

  constructor() {
    for (const [label, secret] of Object.entries(PLANTED)) this.add(`planted ${label}`, secret);
  }

  /** Adds a secret: every 20-character piece of it, PEM armour and whitespace left out. */
  add(label: string, text: string): void {
    const body = text.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, "").replace(/\s+/g, "");
    for (let i = 0; i + WINDOW <= body.length; i++) {
      this.#pieces.set(body.slice(i, i + WINDOW), label);
    }
  }

  /** The instance's certificate, private key and intermediate, as IMDS serves them now. */
  async addIdentity(emu: Emulator): Promise<void> {
    for (const path of ["identity/cert.pem", "identity/key.pem", "identity/intermediate.pem"]) {
      const response = await fetch(`${emu.env.OCI_METADATA_BASE_URL}/${path}`, {
        headers: { authorization: "Bearer Oracle" },
      });
      this.add(`IMDS ${path}`, await response.text());
    }
  }

  /**
   * The secrets a run produced: the docker token it answered, and the tokens and session key it
   * cached. Every cache file must be 0600, whatever happened.
   */
  async harvest(run: Run, cacheDir: string): Promise<void> {
    for (const [host, auth] of Object.entries(run.response?.auth ?? {})) {
      this.add(`docker token for ${host}`, auth.password);
    }
    for await (const entry of Deno.readDir(cacheDir)) {
      const path = `${cacheDir}/${entry.name}`;
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600, path);
      if (!entry.name.endsWith(".json")) continue;
      const value = JSON.parse(await Deno.readTextFile(path));
      for (const field of ["token", "privateKey"]) {
        if (typeof value[field] === "string") this.add(`${entry.name} ${field}`, value[field]);
      }
    }
  }

  /** Asserts that `stderr` holds no secret, nor anything shaped like a token, key or certificate. */
  assertClean(stderr: string, context: string): void {
    const where = `${context}\n--- stderr:\n${stderr}`;
    assert.doesNotMatch(stderr, /-----BEGIN/, `a PEM block: ${where}`);
    assert.doesNotMatch(stderr, /eyJ[A-Za-z0-9_-]{17,}/, `a JWT: ${where}`);
    assert.doesNotMatch(stderr, /ST\$(?!\[redacted\])/, `an ST$ key id: ${where}`);
    assert.doesNotMatch(
      stderr,
      /MII[A-Za-z0-9+/]{17,}/,
      `base64 DER (a key or certificate): ${where}`,
    );
    const flat = stderr.replace(/\s+/g, "");
    for (let i = 0; i + WINDOW <= flat.length; i++) {
      const label = this.#pieces.get(flat.slice(i, i + WINDOW));
      assert.equal(label, undefined, `${WINDOW}+ characters of ${label}: ${where}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

const AUTH_HOST = "auth.us-ashburn-1.oraclecloud.com";
const HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
const of = (requests: RequestLogEntry[], service: string) =>
  requests.filter((r) => r.service === service);

/** Asserts the service failed as queued, then answered, and that the plugin logged its retry. */
function retried(service: "imds" | "auth" | "ocir", step: string, failures: number) {
  return (run: Run, requests: RequestLogEntry[]) => {
    const seen = of(requests, service);
    const failed = seen.filter((r) => r.status !== 200);
    assert.equal(failed.length, failures, JSON.stringify(seen));
    assert.equal(seen.at(-1)!.status, 200);
    assert.match(
      run.stderr,
      new RegExp(
        `level=info step=${step} host=\\S+ msg=".*; retrying in \\d+ ms \\(attempt 2 of ${
          service === "imds" ? 8 : 5
        }\\)"`,
      ),
    );
  };
}

/** Asserts that each request answered 429 was tried again no sooner than Retry-After said. */
function honouredRetryAfter(service: string, seconds: number) {
  return (requests: RequestLogEntry[]) => {
    for (const refused of of(requests, service).filter((r) => r.status === 429)) {
      const next = of(requests, service).find((r) => r.path === refused.path && r.at > refused.at);
      assert.ok(next, `${refused.path} was tried again`);
      // A lower bound only: waiting longer is never wrong, and slowness cannot fail this.
      assert.ok(next.at - refused.at >= seconds * 1000 - 50, `${refused.path} waited`);
    }
  };
}

/** Asserts the service was asked exactly once: the error was not retried. */
const askedOnce = (service: string) => (_run: Run, requests: RequestLogEntry[]) =>
  assert.equal(of(requests, service).length, 1, JSON.stringify(of(requests, service)));

const DEADLINE = /msg="the invocation's deadline ran out during this step \(raise --timeout/;
const CLOCK_HINT = /most often the node's clock is off by more than 5 minutes/;
const POLICY_HINT = /add it to a dynamic group .*'Allow dynamic-group <group> to read repos in/;
const PROXY_HINT =
  /\(IMDS answers only 200, 404 or 429: another server answered; check OCI_METADATA_BASE_URL, or what on this node intercepts traffic to IMDS\)/;
const NOT_JSON = /answered \d+ bytes of [\w/]+ that are not a JSON object/;

/** Every scenario of the suite, in the order of issue 5. */
export const SCENARIOS: Scenario[] = [
  // --- One deadline: a hang anywhere ends in one line naming the step, within --timeout.
  {
    name: "IMDS never answers",
    arrange: ({ emu }) => emu.fault("imds", { hang: true }),
    timeout: 3,
    expect: { step: "IMDS", line: DEADLINE },
  },
  {
    name: "the auth service never answers",
    arrange: ({ emu }) => emu.fault("auth", { hang: true }),
    timeout: 3,
    expect: { step: "federation", line: new RegExp(`host=${AUTH_HOST} ${DEADLINE.source}`) },
  },
  {
    name: "OCIR never answers",
    arrange: ({ emu }) => emu.fault("ocir", { hang: true }),
    timeout: 3,
    expect: { step: "OCIR token", line: new RegExp(`host=iad\\.ocir\\.io ${DEADLINE.source}`) },
  },
  {
    name: "IMDS rate-limits with a Retry-After beyond the deadline: no pointless wait",
    arrange: ({ emu }) => emu.fault("imds", { status: [429, 429, 429, 429], retryAfter: 120 }),
    timeout: 5,
    expect: { step: "IMDS", line: /HTTP 429 TooManyRequests: .*; no time left to retry/ },
  },

  // --- Retries: 429 honouring Retry-After, 5xx, dropped connections; then success.
  {
    name: "IMDS answers 429 with Retry-After twice, then serves",
    arrange: ({ emu }) => emu.fault("imds", { status: [429, 429], retryAfter: 1 }),
    level: "info",
    expect: { ok: true },
    check: (run, requests) => {
      retried("imds", "IMDS", 2)(run, requests);
      honouredRetryAfter("imds", 1)(requests);
    },
  },
  {
    name: "IMDS answers 500 then 503, then serves",
    arrange: ({ emu }) => emu.fault("imds", { status: [500, 503] }),
    level: "info",
    expect: { ok: true },
    check: retried("imds", "IMDS", 2),
  },
  {
    name: "IMDS answers 404 for the key (not provisioned yet), then serves it",
    arrange: ({ emu }) => emu.fault("imds:identity/key.pem", { status: [404] }),
    level: "info",
    expect: { ok: true },
    check: retried("imds", "IMDS", 1),
  },
  {
    name: "IMDS drops a connection, then serves",
    arrange: (rig) => dropOnce(rig, "imds:identity/cert.pem"),
    level: "info",
    expect: { ok: true },
    check: retried("imds", "IMDS", 1),
  },
  {
    name: "the auth service answers 429 with Retry-After, then federates",
    arrange: ({ emu }) => emu.fault("auth", { status: [429], retryAfter: 1 }),
    level: "info",
    expect: { ok: true },
    check: (run, requests) => {
      retried("auth", "federation", 1)(run, requests);
      honouredRetryAfter("auth", 1)(requests);
    },
  },
  {
    name: "the auth service answers 500 then 503, then federates",
    arrange: ({ emu }) => emu.fault("auth", { status: [500, 503] }),
    level: "info",
    expect: { ok: true },
    check: retried("auth", "federation", 2),
  },
  {
    name: "the auth service drops a connection, then federates",
    arrange: (rig) => dropOnce(rig, "auth"),
    level: "info",
    expect: { ok: true },
    check: retried("auth", "federation", 1),
  },
  {
    name: "OCIR answers 429 with Retry-After, then issues",
    arrange: ({ emu }) => emu.fault("ocir", { status: [429], retryAfter: 1 }),
    level: "info",
    expect: { ok: true },
    check: (run, requests) => {
      retried("ocir", "OCIR-token", 1)(run, requests);
      honouredRetryAfter("ocir", 1)(requests);
    },
  },
  {
    name: "OCIR answers 502 then 503, then issues",
    arrange: ({ emu }) => emu.fault("ocir", { status: [502, 503] }),
    level: "info",
    expect: { ok: true },
    check: retried("ocir", "OCIR-token", 2),
  },
  {
    name: "OCIR drops a connection, then issues",
    arrange: (rig) => dropOnce(rig, "ocir"),
    level: "info",
    expect: { ok: true },
    check: retried("ocir", "OCIR-token", 1),
  },

  // --- Never retried: 400/401/403, each with what it most likely means.
  {
    name: "the auth service answers 401: not retried, the clock or certificate named",
    arrange: ({ emu }) => emu.fault("auth", { status: [401, 401] }),
    expect: {
      step: "federation",
      line: new RegExp(`HTTP 401 NotAuthenticated: .*${CLOCK_HINT.source}`),
    },
    check: askedOnce("auth"),
  },
  {
    name: "the auth service answers 400: not retried",
    arrange: ({ emu }) => emu.fault("auth", { status: [400, 400] }),
    expect: { step: "federation", line: /HTTP 400 InvalidParameter: .*malformed; report it/ },
    check: askedOnce("auth"),
  },
  {
    name: "the auth service answers 403: not retried",
    arrange: ({ emu }) => emu.fault("auth", { status: [403, 403] }),
    expect: { step: "federation", line: /HTTP 403 NotAuthorizedOrNotFound/ },
    check: askedOnce("auth"),
  },
  {
    name: "OCIR answers 401: not retried, the dynamic group and policy named",
    arrange: ({ emu }) => emu.fault("ocir", { status: [401, 401] }),
    expect: {
      step: "OCIR token",
      line: new RegExp(`HTTP 401 NotAuthenticated: .*${POLICY_HINT.source}`),
    },
    check: askedOnce("ocir"),
  },
  {
    name: "OCIR answers 403: not retried, the dynamic group and policy named",
    arrange: ({ emu }) => emu.fault("ocir", { status: [403, 403] }),
    expect: {
      step: "OCIR token",
      line: new RegExp(`HTTP 403 NotAuthorizedOrNotFound: .*${POLICY_HINT.source}`),
    },
    check: askedOnce("ocir"),
  },
  {
    name: "IMDS answers 401: not retried, a proxy in the way suspected",
    arrange: ({ emu }) => emu.fault("imds:identity/cert.pem", { status: [401, 401] }),
    expect: { step: "IMDS", line: new RegExp(`HTTP 401 .*${PROXY_HINT.source}`) },
    check: (_run, requests) =>
      assert.equal(requests.filter((r) => r.path.endsWith("identity/cert.pem")).length, 1),
  },

  // --- IMDS answering what it should not.
  {
    name: "IMDS answers an HTML page for everything",
    arrange: ({ emu }) => emu.fault("imds", { body: HTML }),
    expect: {
      step: "IMDS",
      line: new RegExp(
        `region '<html>.*' is not in the region table, and instance/regionInfo/ ${NOT_JSON.source} ${PROXY_HINT.source}`,
      ),
    },
  },
  {
    name: "HTTP_PROXY without 169.254.169.254 in NO_PROXY: IMDS is still asked directly",
    env: (emu) => ({
      HTTP_PROXY: emu.env.HTTPS_PROXY,
      http_proxy: emu.env.HTTPS_PROXY,
      NO_PROXY: "",
    }),
    expect: { ok: true },
    check: (_run, requests) =>
      assert.ok(
        !requests.some((r) => r.service === "proxy" && r.host.startsWith("http:")),
        "no plain-HTTP request reached the proxy",
      ),
  },
  {
    name: "IMDS answers HTML for regionInfo only: instance/region and the table take over",
    arrange: ({ emu }) => emu.fault("imds:instance/regionInfo/", { body: HTML }),
    expect: { ok: true },
    check: (_run, requests) =>
      assert.ok(requests.some((r) => r.path.endsWith("/instance/region") && r.status === 200)),
  },
  {
    name: "a truncated certificate PEM",
    arrange: ({ emu }) =>
      emu.fault("imds:identity/cert.pem", { body: emu.leafCertPem.slice(0, 400) }),
    expect: {
      step: "identity",
      line: /msg="instance certificate is not a PEM CERTIFICATE \(truncated or not PEM\)"/,
    },
    check: (_run, requests) => assert.deepEqual(of(requests, "auth"), []),
  },
  {
    name: "a certificate PEM with a line of its body missing",
    arrange: ({ emu }) =>
      emu.fault("imds:identity/cert.pem", {
        body: emu.leafCertPem.replace(/\n[A-Za-z0-9+/]{64}\n/, "\n"),
      }),
    expect: { step: "identity", line: /instance certificate is not a valid X\.509 certificate/ },
  },
  {
    name: "a private key that does not belong to the certificate",
    arrange: ({ emu }) => emu.fault("imds:identity/key.pem", { body: PLANTED.otherKeyPem }),
    expect: {
      step: "identity",
      line: /instance private key does not match the instance certificate/,
    },
    check: (_run, requests) => assert.deepEqual(of(requests, "auth"), []),
  },
  {
    name: "a certificate where the private key should be",
    arrange: ({ emu }) => emu.fault("imds:identity/key.pem", { body: emu.leafCertPem }),
    expect: {
      step: "identity",
      line: /instance private key is not a PEM RSA PRIVATE KEY or PRIVATE KEY/,
    },
  },
  {
    name: "an expired instance certificate",
    arrange: ({ emu }) => emu.expireLeaf(),
    expect: {
      step: "identity",
      line:
        /instance certificate is valid from \S+ to \S+, not now \(\S+\) \(check the node's clock/,
    },
    check: (_run, requests) => assert.deepEqual(of(requests, "auth"), []),
    restore: (emu) => emu.rotateLeaf(),
  },

  // --- The auth service answering what it should not.
  {
    name: "the auth service answers HTML",
    arrange: ({ emu }) => emu.fault("auth", { body: HTML }),
    expect: { step: "federation", line: NOT_JSON },
  },
  {
    name: "the auth service answers no token",
    arrange: ({ emu }) => emu.fault("auth", { body: "{}" }),
    expect: { step: "federation", line: /msg="the answer has no token"/ },
  },
  {
    name: "the auth service answers a security token that is not a JWT",
    arrange: ({ emu }) => emu.fault("auth", { body: '{"token":"not-a-jwt"}' }),
    expect: { step: "federation", line: /msg="security token is not a JWT"/ },
  },
  {
    name: "the auth service answers a JWT whose payload is not JSON",
    arrange: ({ emu }) => emu.fault("auth", { body: `{"token":"${b64url("{}")}.%%%.c2ln"}` }),
    expect: { step: "federation", line: /msg="security token has an unreadable payload"/ },
  },
  {
    name: "the auth service answers an expired security token",
    arrange: ({ emu }) =>
      emu.fault("auth", { body: JSON.stringify({ token: PLANTED.expiredToken }) }),
    expect: { step: "federation", line: /msg="security token expired at \d{4}-\d\d-\d\dT/ },
  },
  {
    name: "the auth service answers a security token without expiry",
    arrange: ({ emu }) =>
      emu.fault("auth", { body: JSON.stringify({ token: PLANTED.timelessToken }) }),
    expect: { step: "federation", line: /msg="security token has no expiry \(exp\)"/ },
  },
  {
    name: "the node's clock is 10 minutes behind the auth service's: 401, not retried",
    arrange: ({ emu }) => emu.fault("auth", { clockSkewSec: 600 }),
    expect: {
      step: "federation",
      line: new RegExp(`HTTP 401 NotAuthenticated: date .*${CLOCK_HINT.source}`),
    },
    check: askedOnce("auth"),
  },
  {
    name: "the node's clock is 10 minutes ahead of the auth service's: 401, not retried",
    arrange: ({ emu }) => emu.fault("auth", { clockSkewSec: -600 }),
    expect: {
      step: "federation",
      line: new RegExp(`HTTP 401 NotAuthenticated: date .*${CLOCK_HINT.source}`),
    },
    check: askedOnce("auth"),
  },
  {
    name: "3 minutes of clock skew is within OCI's 5: it works",
    arrange: ({ emu }) => {
      emu.fault("auth", { clockSkewSec: 180 });
      emu.fault("ocir", { clockSkewSec: 180 });
    },
    expect: { ok: true },
  },

  // --- OCIR answering what it should not.
  {
    name: "OCIR answers HTML",
    arrange: ({ emu }) => emu.fault("ocir", { body: HTML }),
    expect: { step: "OCIR token", line: NOT_JSON },
  },
  {
    name: "OCIR answers no token",
    arrange: ({ emu }) => emu.fault("ocir", { body: '{"scope":"","expires_in":3600}' }),
    expect: { step: "OCIR token", line: /msg="the answer has no token"/ },
  },
  ...([
    ["0", 0, "0"],
    ["negative", -60, "-60"],
    ["absurd (1e9)", 1e9, "1000000000"],
    ["a string", "3600", "'3600'"],
  ] as const).map(([label, value, shown]): Scenario => ({
    name: `OCIR answers expires_in ${label}`,
    arrange: ({ emu }) =>
      emu.fault("ocir", {
        body: JSON.stringify({
          token: PLANTED.dockerToken,
          access_token: PLANTED.dockerToken,
          scope: "",
          expires_in: value,
        }),
      }),
    expect: {
      step: "OCIR token",
      line: new RegExp(
        `msg="the answer's expires_in \\(${shown}\\) is not a lifetime in seconds between 1 and 86400"`,
      ),
    },
  })),
  {
    name: "OCIR's clock is 10 minutes off the node's: 401 naming the clock as well as the policy",
    arrange: ({ emu }) => emu.fault("ocir", { clockSkewSec: 600 }),
    expect: {
      step: "OCIR token",
      line: /HTTP 401 NotAuthenticated: date .*the node's clock is more than 5 minutes off/,
    },
    check: askedOnce("ocir"),
  },

  // --- Services quoting secrets back: the line carries none of it.
  {
    name: "the auth service quotes a key and a security token in its error",
    arrange: ({ emu }) =>
      emu.fault("auth", {
        status: [401],
        body: JSON.stringify({
          code: "NotAuthenticated",
          message: `bad key ${PLANTED.otherKeyPem} for ST$${PLANTED.echoedToken}`,
        }),
      }),
    expect: { step: "federation", line: /HTTP 401 NotAuthenticated: bad key \[PEM redacted\]/ },
  },
  {
    name: "OCIR quotes a token in its error",
    arrange: ({ emu }) =>
      emu.fault("ocir", {
        status: [401],
        body: JSON.stringify({
          errors: [{ code: "UNAUTHORIZED", message: `token ${PLANTED.echoedToken} refused` }],
        }),
      }),
    expect: { step: "OCIR token", line: /HTTP 401 UNAUTHORIZED: token \[JWT redacted\]/ },
  },
  {
    name: "OCIR quotes key material in its error just before the message is cut",
    arrange: ({ emu }) =>
      emu.fault("ocir", {
        status: [401],
        body: JSON.stringify({
          errors: [{
            code: "UNAUTHORIZED",
            // The service's words are cut at 200 characters: here 26 of the key's come first.
            message: `${"context ".repeat(19)}key ${PLANTED.echoedKey}`,
          }],
        }),
      }),
    expect: { step: "OCIR token", line: /HTTP 401 UNAUTHORIZED: (context ){19}key / },
    check: (run) => assert.ok(!run.stderr.includes(PLANTED.echoedKey.slice(0, 20))),
  },

  // --- The cache directory unusable: the answer still comes, with one warning.
  {
    name: "a cache directory that cannot be created (read-only file system)",
    cacheDir: `/sys/okecp-fault-${crypto.randomUUID()}`,
    expect: {
      ok: true,
      warn:
        /step=cache msg="cannot use cache directory \/sys\/okecp-fault-\S+ \(.*\); answering without caching"/,
    },
  },
  {
    name: "a cache directory that exists but cannot be made private or written",
    cacheDir: "/proc/self",
    expect: {
      ok: true,
      warn:
        /step=cache msg="cannot use cache directory \/proc\/self \(.*\); answering without caching"/,
    },
  },

  // --- TLS is never relaxed.
  {
    name: "DENO_CERT names another CA: a TLS error naming the host, tried once",
    env: (emu) => ({
      DENO_CERT: emu.registryTokenCaFile,
      // Node's switch must not turn verification off either.
      NODE_TLS_REJECT_UNAUTHORIZED: "0",
    }),
    expect: {
      step: "federation",
      line: new RegExp(
        `host=${AUTH_HOST} msg="request failed: .*invalid peer certificate: UnknownIssuer \\(the server's TLS certificate is not trusted by this node`,
      ),
    },
    check: (_run, requests) => {
      assert.deepEqual(requests.filter((r) => r.service === "proxy").map((r) => r.host), [
        `${AUTH_HOST}:443`,
      ]);
      assert.deepEqual(of(requests, "auth"), [], "no request went over the untrusted connection");
    },
  },
  {
    name: "no DENO_CERT: the system roots do not know the emulator's CA",
    env: () => ({ DENO_CERT: undefined }),
    expect: { step: "federation", line: /invalid peer certificate: UnknownIssuer/ },
    check: (_run, requests) => assert.deepEqual(of(requests, "auth"), []),
  },

  // --- Image references kubelet might pass: a clear error, and nothing sent anywhere.
  ...([
    ["a unicode host", "iad.ocír.io/ns/app:1", /has an invalid registry host/],
    ["a unicode path", "iad.ocir.io/ns/äpp:1", /has an invalid repository path/],
    ["a space", "iad.ocir.io/ns/my app:1", /has an invalid repository path/],
    ["a .. path", "iad.ocir.io/../../etc/passwd", /has an invalid repository path/],
    ["a .. tag", "iad.ocir.io/ns/app:../../x", /has an invalid repository path/],
    ["a very long name", `iad.ocir.io/ns/${"a".repeat(400)}:1`, /has no valid name/],
    ["a very long tag", `iad.ocir.io/ns/app:${"1".repeat(200)}`, /has an invalid tag/],
    ["a NUL", "iad.ocir.io/ns/app\u0000:1", /has an invalid repository path/],
    ["a newline", "iad.ocir.io/ns/app\nlevel=error:1", /has an invalid/],
    ["an escape sequence", "\u001b[31miad.ocir.io/ns/app:1", /has an invalid registry host/],
    ["a bidi override", "iad.ocir.io/ns/\u202eppa:1", /has an invalid repository path/],
    ["a zero-width space", "iad.ocir.io\u200b/ns/app:1", /has an invalid registry host/],
    ["a smuggled host", "iad.ocir.io@evil.example/ns/app", /has an invalid digest/],
  ] as const).map(([label, image, line]): Scenario => ({
    name: `an image reference with ${label}`,
    image,
    expect: { step: "image", line: new RegExp(`step=image msg="image reference .*${line.source}`) },
    check: (_run, requests) => assert.deepEqual(requests, [], "nothing sent anywhere"),
  })),
  {
    name: "an image on an OCI host that is not OCIR (the auth service's): not a single request",
    image: `${AUTH_HOST}/ns/app:1`,
    expect: { foreign: true },
  },
  {
    name: "an image on a host named like OCIR under another domain: not a single request",
    image: "iad.ocir.io.evil.example/ns/app:1",
    expect: { foreign: true },
  },
  ...["[2001:db8::1]:5000/app:1", "[::1]/ns/app@sha256:" + "a".repeat(64)].map((image) => ({
    name: `an image on an IPv6 literal registry (${image.split("/")[0]}): not OCIR, not a failure`,
    image,
    expect: { foreign: true as const },
  })),
];
