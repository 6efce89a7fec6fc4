/**
 * Kubelet's contract, table-driven and in-process through run() (lib/plugin.ts): what lands on
 * stdout, on stderr and in the exit status for each kind of input, with no subprocess. The cases
 * need no network: answers come from a cache written here, or are refused before any request.
 * Process-level behaviour (real stdin, exit codes, the watchdog) stays in cli_test.ts and
 * plugin_test.ts.
 */
import assert from "node:assert/strict";
import { writeDockerToken } from "../lib/cache.ts";
import { API_VERSIONS, PULL_IDENTITY_ANNOTATION } from "../lib/kubelet.ts";
import { run } from "../lib/plugin.ts";
import { VERSION } from "../lib/version.ts";

/** What one in-process run printed and returned. */
interface Outcome {
  status: number;
  stdout: string[];
  stderr: string[];
}

/** A stdin that yields `text` in one read, then its end. */
function stdinOf(text: string) {
  let bytes: Uint8Array | null = new TextEncoder().encode(text);
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      if (!bytes || bytes.length === 0) return Promise.resolve(null);
      const n = Math.min(buffer.length, bytes.length);
      buffer.set(bytes.subarray(0, n));
      bytes = bytes.subarray(n);
      return Promise.resolve(n);
    },
  };
}

/** Runs the command in-process with `env` as its whole environment. */
async function runWith(
  args: string[],
  stdin: string,
  env: Record<string, string> = {},
): Promise<Outcome> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const status = await run(args, {
    stdin: stdinOf(stdin),
    stdout: (line) => stdout.push(line),
    stderr: (line) => stderr.push(line),
    env: (name) => env[name],
  });
  return { status, stdout, stderr };
}

const request = (image: string, apiVersion: string = API_VERSIONS[0]) =>
  JSON.stringify({ apiVersion, kind: "CredentialProviderRequest", image });

/** A cache directory holding a docker token for iad.ocir.io, valid for another 50 minutes. */
async function warmCache(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "okecp-contract-" });
  await Deno.chmod(dir, 0o700);
  const now = Math.floor(Date.now() / 1000);
  await writeDockerToken(dir, {
    host: "iad.ocir.io",
    token: "cached-docker-token",
    obtainedAt: now - 10,
    issuedAt: now - 10,
    refreshAt: now + 3000, // before its refresh point: kubelet is told to come back then
    expiresAt: now + 3590,
    fingerprint: "aa:bb",
    tenancy: "ocid1.tenancy.oc1..contract",
  });
  return dir;
}

/** Each case: the input, and what kubelet must see. */
const CASES: {
  name: string;
  args?: string[];
  stdin?: string;
  status: number;
  stdout: RegExp | ((lines: string[]) => void);
  stderr: RegExp[];
}[] = [
  {
    name: "--version prints the version, reads nothing",
    args: ["--version"],
    status: 0,
    stdout: new RegExp(`^oke-credential-provider ${VERSION.replaceAll(".", "\\.")}$`),
    stderr: [],
  },
  {
    name: "--help prints the usage",
    args: ["--help"],
    status: 0,
    stdout: /^Usage: oke-credential-provider/,
    stderr: [],
  },
  {
    name: "a bad flag: one line naming the arguments",
    args: ["--timeout", "soon"],
    status: 1,
    stdout: /^$/,
    stderr: [/^oke-credential-provider level=error step=arguments msg="--timeout 'soon' is not/],
  },
  {
    name: "empty stdin: one line naming the request",
    stdin: "",
    status: 1,
    stdout: /^$/,
    stderr: [/level=error step=request msg="stdin is empty: expected a CredentialProviderRequest/],
  },
  {
    name: "stdin that is not JSON: the input is not quoted back",
    stdin: "token=eyJhbGciOi not json",
    status: 1,
    stdout: /^$/,
    stderr: [/level=error step=request msg="stdin is not JSON"$/],
  },
  {
    name: "another kind: refused by name",
    stdin: JSON.stringify({ apiVersion: API_VERSIONS[0], kind: "Pod", image: "x" }),
    status: 1,
    stdout: /^$/,
    stderr: [/step=request msg="kind is 'Pod', expected 'CredentialProviderRequest'"/],
  },
  {
    name: "an unknown apiVersion: refused, the known ones listed",
    stdin: request("iad.ocir.io/ns/app:1", "credentialprovider.kubelet.k8s.io/v2"),
    status: 1,
    stdout: /^$/,
    stderr: [/step=request msg="apiVersion .*v2' is not one of .*v1, /],
  },
  {
    name: "a bad image reference: one line naming the image",
    stdin: request("iad.ocir.io/NS/App:1"),
    status: 1,
    stdout: /^$/,
    stderr: [/level=error step=image msg="image reference/],
  },
  {
    name: "a foreign registry: no credentials, cached by kubelet for no time, and a warning",
    stdin: request("docker.io/library/nginx:1"),
    status: 0,
    stdout: (lines) =>
      assert.deepEqual(JSON.parse(lines[0]), {
        apiVersion: API_VERSIONS[0],
        kind: "CredentialProviderResponse",
        cacheKeyType: "Registry",
        cacheDuration: "0s",
        auth: {},
      }),
    stderr: [/level=warn step=image msg="docker\.io is not an OCIR registry host/],
  },
];

for (const c of CASES) {
  Deno.test(`contract: ${c.name}`, async () => {
    const out = await runWith(c.args ?? [], c.stdin ?? "");
    assert.equal(out.status, c.status, out.stderr.join("\n"));
    if (c.stdout instanceof RegExp) {
      assert.match(out.stdout.join("\n"), c.stdout);
    } else c.stdout(out.stdout);
    assert.equal(out.stderr.length, c.stderr.length, out.stderr.join("\n"));
    c.stderr.forEach((pattern, i) => assert.match(out.stderr[i], pattern));
    assert.ok(out.stdout.length <= 1 || c.args?.includes("--help"), "one line of answer");
  });
}

Deno.test("contract: a cached token answers every API version in its own version, silently", async () => {
  const dir = await warmCache();
  try {
    for (const apiVersion of API_VERSIONS) {
      const out = await runWith([], request("iad.ocir.io/ns/app:1", apiVersion), {
        OKE_CREDENTIAL_PROVIDER_CACHE_DIR: dir,
      });
      assert.equal(out.status, 0, out.stderr.join("\n"));
      assert.deepEqual(out.stderr, []);
      assert.equal(out.stdout.length, 1);
      const response = JSON.parse(out.stdout[0]);
      assert.deepEqual(Object.keys(response), [
        "apiVersion",
        "kind",
        "cacheKeyType",
        "cacheDuration",
        "auth",
      ]);
      assert.equal(response.apiVersion, apiVersion);
      assert.match(response.cacheDuration, /^(49m5\d|50m0)s$/, "the cache's remaining life");
      assert.deepEqual(response.auth, {
        "iad.ocir.io": { username: "BEARER_TOKEN", password: "cached-docker-token" },
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("contract: the answer is for the image's own host form, from that host's cache", async () => {
  const dir = await warmCache();
  try {
    // Nothing listens at this IMDS: a cache miss goes to the network and fails there.
    const other = await runWith(["--timeout", "1"], request("fra.ocir.io/ns/app:1"), {
      OKE_CREDENTIAL_PROVIDER_CACHE_DIR: dir,
      OCI_METADATA_BASE_URL: "http://127.0.0.1:9/opc/v2",
    });
    assert.equal(other.status, 1);
    assert.deepEqual(other.stdout, []);
    assert.match(other.stderr.join("\n"), /step=IMDS host=127\.0\.0\.1:9/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A service-account token as kubelet passes it (unsigned: the plugin only decodes it). */
function serviceAccountToken(sa: { namespace: string; name: string; uid: string }, exp: number) {
  const part = (value: unknown) =>
    new TextEncoder().encode(JSON.stringify(value)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
  return [
    part({ alg: "RS256", kid: "k" }),
    part({
      iss: "https://kubernetes.default.svc.cluster.local",
      sub: `system:serviceaccount:${sa.namespace}:${sa.name}`,
      aud: ["https://kubernetes.default.svc.cluster.local"],
      exp,
      "kubernetes.io": {
        namespace: sa.namespace,
        serviceaccount: { name: sa.name, uid: sa.uid },
      },
    }),
    "c2lnbmF0dXJl",
  ].join(".");
}

Deno.test("contract: KEP-4412 requests: who opts in, deny, refusals, the per-account cache", async () => {
  const dir = await warmCache();
  const now = Math.floor(Date.now() / 1000);
  const sa = { namespace: "team-a", name: "puller", uid: "0b9f6a55-2c1e-4d7a-9a57-2f3f6d1c0e11" };
  const withToken = (
    token: string,
    annotations?: Record<string, string>,
    apiVersion: string = API_VERSIONS[0],
  ) =>
    JSON.stringify({
      apiVersion,
      kind: "CredentialProviderRequest",
      image: "iad.ocir.io/ns/app:1",
      serviceAccountToken: token,
      serviceAccountAnnotations: annotations,
    });
  const optedIn = { [PULL_IDENTITY_ANNOTATION]: "workload" };
  const env = { OKE_CREDENTIAL_PROVIDER_CACHE_DIR: dir };
  // Nothing listens here: a call that reaches the network fails at once.
  const oke = [
    "--workload-identity",
    "oke",
    "--proxymux-url",
    "https://127.0.0.1:9/resourcePrincipalSessionTokens",
    "--timeout",
    "2",
  ];
  const fails = (out: Outcome, pattern: RegExp) => {
    assert.equal(out.status, 1);
    assert.deepEqual(out.stdout, []);
    assert.equal(out.stderr.length, 1, out.stderr.join("\n"));
    assert.match(out.stderr[0], /service account team-a\/puller/);
    assert.match(out.stderr[0], pattern);
  };
  try {
    const token = serviceAccountToken(sa, now + 3600);
    // Not opted in: the node's cached token, as without a token.
    const node = await runWith(oke, withToken(token, { other: "x" }), env);
    assert.equal(JSON.parse(node.stdout[0]).auth["iad.ocir.io"].password, "cached-docker-token");
    // Not opted in, --node-identity deny: no credentials, nothing cached by kubelet.
    const denied = await runWith([...oke, "--node-identity", "deny"], withToken(token), env);
    assert.equal(denied.status, 0);
    assert.deepEqual(JSON.parse(denied.stdout[0]).auth, {});
    assert.equal(JSON.parse(denied.stdout[0]).cacheDuration, "0s");
    // Opted in without a backend: an error, not the node's token.
    fails(await runWith([], withToken(token, optedIn), env), /has no --workload-identity/);
    // Expired, refused without calling anyone; not a JWT.
    fails(
      await runWith(oke, withToken(serviceAccountToken(sa, now - 5), optedIn), env),
      /expired at .*not exchanged/,
    );
    const garbage = await runWith(oke, withToken("not-a-jwt", optedIn), env);
    assert.equal(garbage.status, 1);
    assert.match(garbage.stderr[0], /the service-account token from kubelet is not a JWT/);
    assert.ok(!garbage.stderr[0].includes("not-a-jwt"), "the token is not quoted");
    // The account's own cache entry answers it in every API version, within half the shorter
    // remaining life of its session and docker tokens.
    await Deno.writeTextFile(
      `${dir}/workload-team-a_puller_${sa.uid}-iad.ocir.io.json`,
      JSON.stringify({
        host: "iad.ocir.io",
        namespace: "team-a",
        name: "puller",
        uid: sa.uid,
        token: "team-a-docker-token",
        refreshAt: now + 3000,
        expiresAt: now + 3600,
        sessionExpiresAt: now + 1200,
      }),
      { mode: 0o600 },
    );
    for (const apiVersion of API_VERSIONS) {
      const out = await runWith(oke, withToken(token, optedIn, apiVersion), env);
      assert.equal(out.status, 0, out.stderr.join("\n"));
      const response = JSON.parse(out.stdout[0]);
      assert.equal(response.apiVersion, apiVersion);
      assert.equal(response.auth["iad.ocir.io"].password, "team-a-docker-token");
      assert.match(response.cacheDuration, /^(9m5\d|10m0)s$/);
    }
    // Same namespace and name, another uid (the account was recreated): never that entry; the
    // exchange is attempted (and fails here, the default cluster CA being absent).
    const reborn = serviceAccountToken(
      { ...sa, uid: "7d1c2b0a-0000-4000-8000-000000000000" },
      now + 3600,
    );
    fails(
      await runWith(oke, withToken(reborn, optedIn), env),
      /step=workload-identity .*cannot read the cluster CA/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
