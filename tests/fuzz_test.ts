/**
 * Issue 5, fuzzing (fast-check): the request parser, the image-reference parser and OCIR host
 * recognition, the cache readers and the log line. Any input gives a result or a PluginError of
 * the right step (or `undefined` for the cache), never another exception; results mean what
 * they say (a parsed reference re-assembles to the input, a host recognised as OCIR is the host
 * a request would go to); and no secret survives into a log line. Runs are bounded, so a hang
 * (a regular expression gone quadratic, say) shows as a test that does not finish.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { readDockerToken, readSession } from "../lib/cache.ts";
import { freshness, usableUntil } from "../lib/freshness.ts";
import { PluginError } from "../lib/errors.ts";
import { type ImageReference, ocirHost, parseImage } from "../lib/image.ts";
import { API_VERSIONS, parseRequest, readRequest } from "../lib/kubelet.ts";
import { formatLine } from "../lib/log.ts";
import { REGIONS } from "../lib/regions.ts";
import { fakeJwt, LOG_LINE } from "./support/fault_scenarios.ts";

const RUNS = 2000;

/** Any text: every code point, control characters and astral ones included. */
const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: "grapheme", maxLength: 100 }),
  fc.string({ unit: "binary-ascii", maxLength: 300 }),
);

/** Runs `fn`; it must return, or throw a PluginError of `step` whose message is one short line. */
function resultOrError<T>(step: string, fn: () => T): T | PluginError {
  try {
    return fn();
  } catch (e) {
    assert.ok(e instanceof PluginError, `not a PluginError: ${e}`);
    assert.equal(e.step, step);
    assert.equal(e.code, "BAD_INPUT");
    assert.ok(e.message.length <= 600, `a ${e.message.length}-character message`);
    return e;
  }
}

// ---------------------------------------------------------------------------------------------
// The request.

const requestObject = fc.record({
  apiVersion: fc.oneof(fc.constantFrom(...API_VERSIONS), fc.jsonValue()),
  kind: fc.oneof(fc.constant("CredentialProviderRequest"), fc.jsonValue()),
  image: fc.oneof(anyText, fc.jsonValue()),
  serviceAccountToken: fc.string(),
  serviceAccountAnnotations: fc.dictionary(fc.string(), fc.string()),
}, { requiredKeys: [] });

Deno.test("fuzz: parseRequest gives a request or a request-step error, for any text", () => {
  fc.assert(
    fc.property(
      fc.oneof(anyText, fc.json(), requestObject.map((r) => JSON.stringify(r))),
      (text) => {
        const result = resultOrError("request", () => parseRequest(text));
        if (result instanceof PluginError) return;
        const value = JSON.parse(text);
        assert.ok(API_VERSIONS.includes(value.apiVersion));
        assert.equal(value.kind, "CredentialProviderRequest");
        const { serviceAccountToken: token, serviceAccountAnnotations: annotations } = value;
        assert.deepEqual(result, {
          apiVersion: value.apiVersion,
          image: value.image,
          ...(typeof token === "string" && token !== "" ? { serviceAccountToken: token } : {}),
          ...(annotations !== undefined && annotations !== null
            ? { serviceAccountAnnotations: annotations }
            : {}),
        });
        assert.ok(typeof result.image === "string" && result.image !== "");
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("fuzz: parseRequest accepts exactly the well-formed requests, whatever else they hold", () => {
  fc.assert(
    fc.property(requestObject, (request) => {
      const result = resultOrError("request", () => parseRequest(JSON.stringify(request)));
      const good = API_VERSIONS.includes(request.apiVersion as typeof API_VERSIONS[number]) &&
        request.kind === "CredentialProviderRequest" && typeof request.image === "string" &&
        request.image !== "";
      assert.equal(!(result instanceof PluginError), good, JSON.stringify(request));
    }),
    { numRuns: RUNS },
  );
});

Deno.test("fuzz: a request that is not JSON is never quoted back (it may hold a token)", () => {
  fc.assert(
    fc.property(anyText, anyText, (before, after) => {
      const token = fakeJwt({ sub: "system:serviceaccount:ns:sa" });
      const text = `${before}{"serviceAccountToken":"${token}"${after}`;
      const result = resultOrError("request", () => parseRequest(text));
      if (result instanceof PluginError) assert.ok(!result.message.includes(token.slice(0, 20)));
    }),
    { numRuns: RUNS },
  );
});

/** Pieces of real requests, so that some inputs are whole requests split across reads. */
const jsonChunks = fc.constantFrom(...API_VERSIONS).chain((apiVersion) =>
  fc.nat({ max: 80 }).map((at) => {
    const text = JSON.stringify({
      apiVersion,
      kind: "CredentialProviderRequest",
      image: "iad.ocir.io/ns/a:1",
    });
    return new TextEncoder().encode(text.slice(0, at));
  })
);

Deno.test("fuzz: readRequest on any chunks gives a request or a request-step error", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.uint8Array({ maxLength: 64 }), jsonChunks), { maxLength: 8 }),
      async (chunks) => {
        const queue = [...chunks];
        const source = {
          read(buffer: Uint8Array) {
            const chunk = queue.shift();
            if (chunk === undefined) return Promise.resolve(null);
            buffer.set(chunk);
            return Promise.resolve(chunk.length);
          },
        };
        try {
          const request = await readRequest(source);
          assert.ok(API_VERSIONS.includes(request.apiVersion) && request.image !== "");
        } catch (e) {
          assert.ok(e instanceof PluginError && e.step === "request", String(e));
        }
      },
    ),
    { numRuns: 500 },
  );
});

// ---------------------------------------------------------------------------------------------
// Image references and OCIR hosts.

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/);
const ocirHosts = fc.oneof(
  fc.constantFrom(...REGIONS.flatMap((r) => [
    `ocir.${r.regionId}.oci.${r.realmDomain}`,
    ...(r.realmDomain === "oraclecloud.com"
      ? [`${r.regionKey}.ocir.io`, `${r.regionId}.ocir.io`]
      : []),
  ])),
  label.filter((l) => /^[a-z]/.test(l)).map((l) => `${l}.ocir.io`),
);
const otherHosts = fc.oneof(
  fc.domain(),
  fc.tuple(fc.domain(), fc.integer({ min: 1, max: 65535 })).map(([d, p]) => `${d}:${p}`),
  fc.constantFrom(
    "localhost:5000",
    "docker.io",
    "ocir.io",
    "iad.ocir.io.evil.com",
    "iad.ocir.io:443",
  ),
);
const pathComponent = fc.stringMatching(/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/)
  .filter((c) => c.length <= 30);
const tag = fc.stringMatching(/^\w[\w.-]{0,20}$/);
const digest = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `sha256:${b.toHex()}`);

/** A valid reference and the parts it must parse into. */
const validReference = fc.record({
  registry: fc.oneof(ocirHosts, otherHosts),
  path: fc.array(pathComponent, { minLength: 1, maxLength: 4 }),
  tag: fc.option(tag, { nil: undefined }),
  digest: fc.option(digest, { nil: undefined }),
}).filter((r) => `${r.registry}/${r.path.join("/")}`.length <= 255);

const assemble = (r: ImageReference) =>
  `${r.registry}/${r.repository}${r.tag === undefined ? "" : `:${r.tag}`}${
    r.digest === undefined ? "" : `@${r.digest}`
  }`;

/** A reference with one edit: a character inserted, deleted or replaced, or its case changed. */
const mutatedReference = fc.tuple(
  validReference.map((r) => assemble({ ...r, repository: r.path.join("/") })),
  fc.nat(),
  fc.oneof(
    fc.constantFrom(
      "/",
      ":",
      "@",
      ".",
      "..",
      "-",
      "_",
      "__",
      " ",
      "\u0000",
      "\n",
      "\u202e",
      "é",
      "A",
      "%2e",
      "\\",
      "?",
      "#",
      "//",
    ),
    fc.string({ unit: "binary", minLength: 1, maxLength: 3 }),
  ),
  fc.constantFrom("insert", "delete", "replace", "upper"),
).map(([reference, at, text, edit]) => {
  const i = at % (reference.length + 1);
  if (edit === "insert") return reference.slice(0, i) + text + reference.slice(i);
  if (edit === "delete") return reference.slice(0, i) + reference.slice(i + 1);
  if (edit === "replace") return reference.slice(0, i) + text + reference.slice(i + text.length);
  return reference.toUpperCase();
});

/** Checks what a parse result promises about a reference, whatever the reference. */
function checkParsed(reference: string) {
  const result = resultOrError("image", () => parseImage(reference));
  if (result instanceof PluginError) return;
  // Nothing is lost or invented: the parts re-assemble to the reference.
  const again = assemble(result);
  assert.ok(again === reference || again === `docker.io/${reference}`, `${reference} → ${again}`);
  const host = ocirHost(result.registry);
  if (host) {
    // The host a token request goes to is exactly the one recognised, with no port or userinfo.
    const url = new URL(`https://${host.host}/20180419/docker/token`);
    assert.equal(url.hostname, host.host);
    assert.equal(url.host, host.host);
    assert.equal(host.host, result.registry.toLowerCase());
    assert.ok(
      /^[a-z][a-z0-9-]*\.ocir\.io$/.test(host.host) ||
        /^ocir\.[a-z][a-z0-9-]*\.oci\./.test(host.host),
      host.host,
    );
  }
}

Deno.test("fuzz: parseImage gives a reference that re-assembles to its input, or an image-step error", () => {
  fc.assert(fc.property(anyText, checkParsed), { numRuns: RUNS });
  fc.assert(fc.property(mutatedReference, checkParsed), { numRuns: RUNS });
});

Deno.test("fuzz: valid references parse into their parts; OCIR exactly for OCIR hosts", () => {
  fc.assert(
    fc.property(validReference, (r) => {
      const reference = assemble({ ...r, repository: r.path.join("/") });
      const parsed = parseImage(reference);
      assert.deepEqual(parsed, {
        registry: r.registry,
        repository: r.path.join("/"),
        ...(r.tag === undefined ? {} : { tag: r.tag }),
        ...(r.digest === undefined ? {} : { digest: r.digest }),
      });
      const isOcir = /^[a-z][a-z0-9-]*\.ocir\.io$/.test(r.registry) ||
        /^ocir\.[a-z][a-z0-9-]*\.oci\.([a-z0-9-]+\.)+[a-z]{2,}$/.test(r.registry);
      assert.equal(ocirHost(parsed.registry) !== undefined, isOcir, r.registry);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("fuzz: ocirHost never throws, ignores case, and never accepts a port or a path", () => {
  fc.assert(
    fc.property(fc.oneof(anyText, ocirHosts, otherHosts, mutatedReference), (text) => {
      const host = ocirHost(text);
      assert.deepEqual(ocirHost(text.toUpperCase()), ocirHost(text.toLowerCase()));
      if (host === undefined) return;
      assert.equal(host.host, text.toLowerCase());
      assert.ok(!/[:/@?#\s]/.test(host.host), host.host);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("fuzz: long and repetitive references are answered too (no runaway regular expression)", () => {
  const long = 1024 * 1024; // kubelet's request is at most 1 MiB, so is the reference
  for (
    const reference of [
      "a".repeat(long),
      `iad.ocir.io/${"a-".repeat(long / 2)}`,
      `iad.ocir.io/ns/app@${"a-".repeat(long / 2)}:${"0".repeat(64)}`,
      `iad.ocir.io/ns/app@sha256:${"0".repeat(long)}`,
      `iad.ocir.io/ns/app:${"a".repeat(long)}`,
      `${"a.".repeat(long / 2)}/ns/app`,
      `ocir.a.oci.${"a.".repeat(long / 2)}!/ns/app`,
      `iad.ocir.io/${"a__".repeat(long / 3)}_/app`,
      "/".repeat(long),
      ":".repeat(long),
    ]
  ) {
    const result = resultOrError("image", () => parseImage(reference));
    if (!(result instanceof PluginError)) ocirHost(result.registry);
    ocirHost(reference);
  }
});

// ---------------------------------------------------------------------------------------------
// The cache readers.

const now = Math.floor(Date.now() / 1000);
const HOST = "iad.ocir.io";
const field = <T>(valid: fc.Arbitrary<T>) => fc.oneof(valid, valid, fc.jsonValue());
const entryLike = fc.record({
  host: field(fc.constantFrom(HOST, "fra.ocir.io", "")),
  token: field(fc.string()),
  obtainedAt: field(fc.integer({ min: now - 4000, max: now + 1000 })),
  issuedAt: field(fc.integer({ min: now - 4000, max: now + 1000 })),
  refreshAt: field(fc.integer({ min: now - 1000, max: now + 4000 })),
  expiresAt: field(fc.integer({ min: now, max: now + 5000 })),
  denied: field(fc.boolean()),
  fingerprint: field(fc.string()),
  tenancy: field(fc.string()),
  privateKey: field(fc.base64String()),
}, { requiredKeys: [] });

/** Any file content: text, bytes that are not UTF-8, JSON, and entries with fields gone wrong. */
const fileContent = fc.oneof(
  anyText,
  fc.uint8Array({ maxLength: 200 }),
  fc.json(),
  entryLike.map((e) => JSON.stringify(e)),
  entryLike.map((e) => JSON.stringify(e)).chain((t) => fc.nat(t.length).map((n) => t.slice(0, n))),
);

const isText = (v: unknown) => typeof v === "string" && v !== "";
const isTime = (v: unknown) => typeof v === "number" && Number.isFinite(v);

Deno.test("fuzz: the cache readers give a usable entry or undefined for any file content", async () => {
  const dir = await Deno.makeTempDir({ prefix: "okecp-fuzz-" });
  try {
    await fc.assert(
      fc.asyncProperty(fileContent, async (content) => {
        const write = (path: string) =>
          typeof content === "string"
            ? Deno.writeTextFile(path, content)
            : Deno.writeFile(path, content);
        await write(`${dir}/docker-${HOST}.json`);
        await write(`${dir}/session.json`);
        const docker = await readDockerToken(dir, HOST, now);
        if (docker !== undefined) {
          assert.equal(docker.host, HOST);
          assert.ok(isText(docker.token) && isText(docker.fingerprint) && isText(docker.tenancy));
          assert.ok(isTime(docker.expiresAt) && isTime(docker.refreshAt));
          const judged = freshness(docker, now);
          assert.notEqual(judged.state, "unusable");
          if (judged.state !== "unusable") {
            assert.ok(docker.obtainedAt <= now && judged.cacheSeconds >= 0);
            assert.ok(judged.cacheSeconds <= docker.expiresAt - docker.issuedAt);
          }
        }
        const session = await readSession(dir, now);
        if (session !== undefined) {
          assert.ok(isText(session.token) && isText(session.privateKey));
          assert.ok(isText(session.fingerprint) && isText(session.tenancy));
          assert.ok(isTime(session.expiresAt) && isTime(session.refreshAt));
          assert.ok(session.obtainedAt <= now && now < usableUntil(session));
        }
      }),
      { numRuns: 500 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// The log line: whatever a message holds, one clean line, and no secret in it.

Deno.test("fuzz: a log line is one line without control characters, whatever the message", () => {
  fc.assert(
    fc.property(anyText, fc.option(fc.domain(), { nil: undefined }), (message, host) => {
      const line = formatLine("error", "OCIR token", message, host);
      assert.match(line, LOG_LINE);
      assert.doesNotMatch(line, /\p{C}/u);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("fuzz: a token, ST$ key id or PEM block anywhere in a message never reaches the line", () => {
  const secret = fc.oneof(
    fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 5 }).map((claims) => fakeJwt(claims)),
    fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 5 }).map((claims) =>
      `ST$${fakeJwt(claims)}`
    ),
    fc.uint8Array({ minLength: 60, maxLength: 300 }).map((der) =>
      `-----BEGIN RSA PRIVATE KEY-----\n${
        der.toBase64().replace(/.{1,64}/g, "$&\n")
      }-----END RSA PRIVATE KEY-----`
    ),
  );
  fc.assert(
    fc.property(anyText, secret, anyText, (before, token, after) => {
      const line = formatLine("error", "federation", `${before}${token}${after}`);
      const body = token.replace(/-----[A-Z ]+-----|\s/g, "").replace(/^ST\$/, "");
      for (let i = 0; i + 20 <= body.length; i++) {
        assert.ok(!line.includes(body.slice(i, i + 20)), `${body.slice(i, i + 20)} in ${line}`);
      }
    }),
    { numRuns: RUNS },
  );
});
