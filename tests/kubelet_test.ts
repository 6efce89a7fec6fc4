import assert from "node:assert/strict";
import {
  API_VERSIONS,
  formatResponse,
  goDuration,
  MAX_REQUEST_BYTES,
  parseRequest,
  PULL_IDENTITY_ANNOTATION,
  pullIdentity,
  readRequest,
} from "../lib/kubelet.ts";
import { PluginError } from "../lib/errors.ts";

/** A reader handing out `chunks` in pieces no larger than the caller's buffer, then the end. */
function readerOf(...chunks: Uint8Array[]) {
  const queue = [...chunks];
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      const chunk = queue.shift();
      if (chunk === undefined) return Promise.resolve(null);
      const n = Math.min(chunk.length, buffer.length);
      buffer.set(chunk.subarray(0, n));
      if (n < chunk.length) queue.unshift(chunk.subarray(n));
      return Promise.resolve(n);
    },
  };
}
const request = (fields: Record<string, unknown>) =>
  JSON.stringify({
    apiVersion: API_VERSIONS[0],
    kind: "CredentialProviderRequest",
    image: "iad.ocir.io/ns/a:1",
    ...fields,
  });

Deno.test("parseRequest reads KEP-4412 fields in every API version", () => {
  for (const apiVersion of API_VERSIONS) {
    const parsed = parseRequest(
      request({ apiVersion, serviceAccountToken: "x", serviceAccountAnnotations: { a: "b" } }),
    );
    assert.deepEqual(parsed, {
      apiVersion,
      image: "iad.ocir.io/ns/a:1",
      serviceAccountToken: "x",
      serviceAccountAnnotations: { a: "b" },
    });
    assert.deepEqual(parseRequest(request({ apiVersion })), {
      apiVersion,
      image: "iad.ocir.io/ns/a:1",
    });
    // Kubelet omits empty fields; an empty token or null annotations are the same as none.
    assert.deepEqual(
      parseRequest(
        request({ apiVersion, serviceAccountToken: "", serviceAccountAnnotations: null }),
      ),
      { apiVersion, image: "iad.ocir.io/ns/a:1" },
    );
  }
});

Deno.test("parseRequest refuses malformed KEP-4412 fields without quoting the token", () => {
  const secret = "eyJzZWNyZXQ.eyJzZWNyZXQ.c2ln";
  assert.throws(
    () => parseRequest(request({ serviceAccountToken: 7 })),
    /serviceAccountToken is not a string/,
  );
  for (const annotations of [[], "x", { a: 1 }]) {
    assert.throws(
      () =>
        parseRequest(
          request({ serviceAccountToken: secret, serviceAccountAnnotations: annotations }),
        ),
      (e: Error) =>
        /serviceAccountAnnotations is not a map of strings/.test(e.message) &&
        !e.message.includes("c2ln"),
    );
  }
});

Deno.test("pullIdentity: only a token with the annotation set to exactly workload opts in", () => {
  const base = { apiVersion: API_VERSIONS[0], image: "iad.ocir.io/ns/a:1" } as const;
  const withToken = (annotations?: Record<string, string>) => ({
    ...base,
    serviceAccountToken: "t",
    serviceAccountAnnotations: annotations,
  });
  const table: [Parameters<typeof pullIdentity>[0], "allow" | "deny", string][] = [
    [base, "allow", "node"],
    [base, "deny", "node"], // no token: every call without tokenAttributes, unchanged
    [
      { ...base, serviceAccountAnnotations: { [PULL_IDENTITY_ANNOTATION]: "workload" } },
      "deny",
      "node",
    ],
    [withToken(), "allow", "node"],
    [withToken(), "deny", "none"],
    [withToken({ [PULL_IDENTITY_ANNOTATION]: "workload" }), "allow", "workload"],
    [withToken({ [PULL_IDENTITY_ANNOTATION]: "workload" }), "deny", "workload"],
    [withToken({ [PULL_IDENTITY_ANNOTATION]: "Workload" }), "allow", "node"],
    [withToken({ [PULL_IDENTITY_ANNOTATION]: "true" }), "deny", "none"],
    [withToken({ [PULL_IDENTITY_ANNOTATION]: "node" }), "allow", "node"],
    [withToken({ "other.io/pull-identity": "workload" }), "deny", "none"],
  ];
  for (const [request, node, expected] of table) {
    assert.equal(pullIdentity(request, node), expected, JSON.stringify([request, node]));
  }
});

const rejected: [string, string, RegExp][] = [
  ["empty stdin", "", /stdin is empty/],
  ["blank stdin", " \n\t", /stdin is empty/],
  ["not JSON", "{image: x}", /not JSON/],
  ["a JSON array", "[]", /not a JSON object/],
  ["JSON null", "null", /not a JSON object/],
  ["a JSON string", '"x"', /not a JSON object/],
  [
    "wrong kind",
    request({ kind: "CredentialProviderResponse" }),
    /kind is "CredentialProviderResponse"/,
  ],
  ["no kind", request({ kind: undefined }), /kind is missing/],
  [
    "unknown apiVersion",
    request({ apiVersion: "credentialprovider.kubelet.k8s.io/v2" }),
    /apiVersion "credentialprovider.kubelet.k8s.io\/v2" is not one of/,
  ],
  ["no apiVersion", request({ apiVersion: undefined }), /apiVersion missing/],
  ["no image", request({ image: undefined }), /names no image/],
  ["empty image", request({ image: "" }), /names no image/],
  ["image not a string", request({ image: 42 }), /names no image/],
];
for (const [name, text, pattern] of rejected) {
  Deno.test(`parseRequest rejects ${name} with a request-step error`, () => {
    assert.throws(
      () => parseRequest(text),
      (e) => e instanceof PluginError && e.step === "request" && pattern.test(e.message),
    );
  });
}

Deno.test("parseRequest does not quote unparsable input, which may hold a token", () => {
  assert.throws(
    () => parseRequest('{"serviceAccountToken":"eyJsecret'),
    (e) => !(e as Error).message.includes("eyJ"),
  );
});

Deno.test("readRequest stops at a whole request, waits for the rest, refuses more than 1 MiB", async () => {
  const enc = new TextEncoder();
  const whole = request({});
  // Kubelet's way: all at once, and stdin never needs to reach its end.
  const open = readerOf(enc.encode(whole));
  assert.equal(
    (await readRequest({
      read: (b) => open.read(b).then((n) => n ?? new Promise(() => {})),
    })).image,
    "iad.ocir.io/ns/a:1",
  );
  // Split anywhere: waits for the rest.
  for (const at of [1, 20, whole.length - 1]) {
    const parsed = await readRequest(
      readerOf(enc.encode(whole.slice(0, at)), enc.encode(whole.slice(at))),
    );
    assert.equal(parsed.image, "iad.ocir.io/ns/a:1");
  }
  await assert.rejects(readRequest(readerOf()), /stdin is empty/);
  await assert.rejects(readRequest(readerOf(enc.encode('{"kind":'))), /stdin is not JSON/);
  await assert.rejects(readRequest(readerOf(new Uint8Array([0xff, 0xfe]))), /not UTF-8/);
  const spaces = new Uint8Array(MAX_REQUEST_BYTES).fill(0x20);
  await assert.rejects(readRequest(readerOf(spaces)), /stdin is empty/, "exactly 1 MiB is read");
  await assert.rejects(
    readRequest(readerOf(spaces, new Uint8Array([0x20]))),
    /larger than 1048576 bytes/,
  );
});

Deno.test("goDuration formats as Go's time.Duration.String", () => {
  const table: [number, string][] = [
    [0, "0s"],
    [-5, "0s"],
    [1, "1s"],
    [59.9, "59s"],
    [60, "1m0s"],
    [90, "1m30s"],
    [3300, "55m0s"],
    [3600, "1h0m0s"],
    [3723, "1h2m3s"],
    [90000, "25h0m0s"],
  ];
  for (const [seconds, text] of table) assert.equal(goDuration(seconds), text, `${seconds}`);
});

Deno.test("formatResponse has exactly the fields kubelet decodes strictly", () => {
  for (const apiVersion of API_VERSIONS) {
    const json = JSON.parse(
      formatResponse(apiVersion, { host: "iad.ocir.io", password: "pw" }, 3300),
    );
    assert.deepEqual(json, {
      apiVersion,
      kind: "CredentialProviderResponse",
      cacheKeyType: "Registry",
      cacheDuration: "55m0s",
      auth: { "iad.ocir.io": { username: "BEARER_TOKEN", password: "pw" } },
    });
  }
  assert.deepEqual(JSON.parse(formatResponse(API_VERSIONS[1], null, 0)).auth, {});
});
