/**
 * The whole plugin, run as kubelet runs it, against the OCI emulator: every OCIR host form,
 * cross-region, another realm, a dedicated region, older IMDS, both certificate subject shapes,
 * every API version, foreign hosts, bad stdin, the cache.
 */
import assert from "node:assert/strict";
import { API_VERSIONS } from "../lib/kubelet.ts";
import { emulatorClient } from "./emulator/client.ts";
import { type Emulator, type EmulatorOptions, startEmulator } from "./emulator/mod.ts";
import {
  kubeletRequest,
  makeCacheDir,
  type PluginRun,
  runPlugin,
  settled,
} from "./support/plugin_process.ts";

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });

/** Runs `fn` with a fresh emulator and a fresh cache directory. */
async function withEmulator(
  options: EmulatorOptions,
  fn: (emu: Emulator, cacheDir: string) => Promise<void>,
) {
  const emu = await startEmulator(options);
  const cacheDir = await makeCacheDir();
  try {
    await fn(emu, cacheDir);
  } finally {
    await emu.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
}

const provide = (
  emu: Emulator,
  cacheDir: string,
  image: string,
  apiVersion?: string,
  args: string[] = [],
) =>
  runPlugin({
    stdin: kubeletRequest(image, apiVersion),
    env: emu.env,
    args: ["--cache-dir", cacheDir, ...args],
  });

/**
 * The cache directory's files once the run's background work is over; asserts that its tokens
 * (the status record apart) are `host`'s docker token, the session, its spare key and the lock.
 */
async function assertCachedFiles(cacheDir: string, host: string): Promise<string[]> {
  await settled(cacheDir);
  const files = [...Deno.readDirSync(cacheDir)].map((e) => e.name).sort();
  assert.deepEqual(files.filter((name) => !name.startsWith("status-")), [
    `docker-${host}.json`,
    "lock",
    "session-key.spare.json",
    "session.json",
  ]);
  return files;
}

/** Asserts a successful answer for `host` and returns its password. */
function credentialsFor(
  run: PluginRun,
  host: string,
  apiVersion: string = API_VERSIONS[0],
): string {
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "", "a successful run is silent at the default log level");
  const r = run.response!;
  assert.deepEqual(Object.keys(r), ["apiVersion", "kind", "cacheKeyType", "cacheDuration", "auth"]);
  assert.equal(r.apiVersion, apiVersion);
  assert.equal(r.kind, "CredentialProviderResponse");
  assert.equal(r.cacheKeyType, "Registry");
  assert.deepEqual(Object.keys(r.auth), [host]);
  assert.equal(r.auth[host].username, "BEARER_TOKEN");
  return r.auth[host].password;
}

/** Asks the emulated registry realm, as a docker client would, whether the password is good. */
async function realmAccepts(
  emu: Emulator,
  host: string,
  password: string,
  repository: string,
): Promise<string[]> {
  const client = await emulatorClient(emu.env);
  try {
    const scope = `repository:${repository}:pull`;
    const response = await fetch(
      `https://${host}/20180419/docker/token?service=${host}&scope=${encodeURIComponent(scope)}`,
      { client, headers: { authorization: `Basic ${btoa(`BEARER_TOKEN:${password}`)}` } },
    );
    assert.equal(response.status, 200, await response.clone().text());
    const { token } = await response.json();
    const claims = JSON.parse(
      new TextDecoder().decode(
        Uint8Array.fromBase64(token.split(".")[1], { alphabet: "base64url" }),
      ),
    );
    return claims.access.flatMap((a: { name: string; actions: string[] }) =>
      a.name === repository ? a.actions : []
    );
  } finally {
    client.close();
  }
}

const hostsOf = (
  emu: Emulator,
  service: string,
) => [...new Set(emu.requests.filter((r) => r.service === service).map((r) => r.host))];

test("iad.ocir.io: the answer carries credentials the stand-in's registry accepts, then comes from the cache", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    const image = `iad.ocir.io/${emu.namespace}/app:1.0`;
    const cold = await provide(emu, cacheDir, image);
    const password = credentialsFor(cold, "iad.ocir.io");
    assert.match(
      cold.response!.cacheDuration,
      /^(1[789]|2[012])m\d+s$/,
      "an hour-long token: until its refresh point, a third of its life ± 10%",
    );
    assert.deepEqual(await realmAccepts(emu, "iad.ocir.io", password, `${emu.namespace}/app`), [
      "pull",
    ]);
    assert.equal(emu.counters.federations, 1);
    assert.equal(emu.counters.dockerTokens, 1);
    assert.deepEqual(hostsOf(emu, "auth"), ["auth.us-ashburn-1.oraclecloud.com"]);

    const seen = { requests: emu.requests.length, connects: emu.connects.length };
    const warm = await provide(
      emu,
      cacheDir,
      `iad.ocir.io/${emu.namespace}/other@sha256:${"0".repeat(64)}`,
    );
    assert.equal(credentialsFor(warm, "iad.ocir.io"), password);
    assert.deepEqual(
      { requests: emu.requests.length, connects: emu.connects.length },
      seen,
      "no network at all",
    );
    const files = await assertCachedFiles(cacheDir, "iad.ocir.io");
    assert.deepEqual(files.filter((name) => name.startsWith("status-")), [
      "status-iad.ocir.io.hits", // the record of the calls, for `status`
      "status-iad.ocir.io.json",
    ]);
    for (const name of files) {
      assert.equal(Deno.statSync(`${cacheDir}/${name}`).mode! & 0o777, 0o600, name);
    }
    assert.equal(Deno.statSync(cacheDir).mode! & 0o777, 0o700);
  });
});

test("every OCIR host form of the region gets its own token from its own host, with one federation", async () => {
  await withEmulator({ region: "eu-frankfurt-1" }, async (emu, cacheDir) => {
    const hosts = [
      "fra.ocir.io",
      "eu-frankfurt-1.ocir.io",
      "ocir.eu-frankfurt-1.oci.oraclecloud.com",
    ];
    for (const host of hosts) {
      const password = credentialsFor(
        await provide(emu, cacheDir, `${host}/${emu.namespace}/app:1`),
        host,
      );
      assert.deepEqual(await realmAccepts(emu, host, password, `${emu.namespace}/app`), ["pull"]);
    }
    assert.deepEqual(hostsOf(emu, "ocir").sort(), [...hosts].sort());
    assert.equal(emu.counters.federations, 1, "the session is reused across hosts");
    assert.equal(emu.counters.dockerTokens, 3);
  });
});

test("cross-region: a node in Ashburn gets Frankfurt's token from Frankfurt's registry host", async () => {
  await withEmulator({ extraRegions: [{ regionId: "eu-frankfurt-1" }] }, async (emu, cacheDir) => {
    const password = credentialsFor(
      await provide(emu, cacheDir, `fra.ocir.io/${emu.namespace}/app:1`),
      "fra.ocir.io",
    );
    assert.deepEqual(await realmAccepts(emu, "fra.ocir.io", password, `${emu.namespace}/app`), [
      "pull",
    ]);
    assert.deepEqual(hostsOf(emu, "auth"), ["auth.us-ashburn-1.oraclecloud.com"]);
    assert.deepEqual(hostsOf(emu, "ocir"), ["fra.ocir.io"]);
  });
});

test("another realm (oc4, oraclegovcloud.uk), every API version answered in its own version", async () => {
  await withEmulator({ region: "uk-gov-london-1" }, async (emu, cacheDir) => {
    const host = "ocir.uk-gov-london-1.oci.oraclegovcloud.uk";
    for (const apiVersion of API_VERSIONS) {
      credentialsFor(
        await provide(emu, cacheDir, `${host}/${emu.namespace}/app:1`, apiVersion),
        host,
        apiVersion,
      );
    }
    assert.deepEqual(hostsOf(emu, "auth"), ["auth.uk-gov-london-1.oraclegovcloud.uk"]);
    assert.equal(emu.counters.dockerTokens, 1, "later versions were answered from the cache");
  });
});

test("a dedicated region known only from regionInfo works; an unknown realm that is not the node's is refused", async () => {
  const realmDomain = "dedicated-cloud.example.com";
  await withEmulator(
    { region: "xx-dedicated-1", realmDomain, regionKey: "DRX", realmKey: "oc99" },
    async (emu, cacheDir) => {
      const host = `ocir.xx-dedicated-1.oci.${realmDomain}`;
      const password = credentialsFor(
        await provide(emu, cacheDir, `${host}/${emu.namespace}/app:1`),
        host,
      );
      assert.deepEqual(await realmAccepts(emu, host, password, `${emu.namespace}/app`), ["pull"]);
      assert.deepEqual(hostsOf(emu, "auth"), [`auth.xx-dedicated-1.${realmDomain}`]);

      const stranger = "ocir.yy-other-1.oci.other-cloud.example.net";
      const refused = await provide(emu, cacheDir, `${stranger}/ns/app:1`);
      assert.equal(refused.code, 1);
      assert.equal(refused.stdout, "");
      assert.match(
        refused.stderr,
        /step=image .*other-cloud\.example\.net, which is neither a known OCI realm nor this node's/,
      );
      assert.ok(
        !emu.connects.some((c) => c.includes("other-cloud")),
        "nothing was sent to the stranger",
      );
    },
  );
});

test("older IMDS without regionInfo: the region comes from instance/region and the table", async () => {
  await withEmulator({ region: "us-phoenix-1", regionInfo: false }, async (emu, cacheDir) => {
    credentialsFor(
      await provide(emu, cacheDir, `phx.ocir.io/${emu.namespace}/app:1`),
      "phx.ocir.io",
    );
    assert.deepEqual(hostsOf(emu, "auth"), ["auth.us-phoenix-1.oraclecloud.com"]);
    assert.ok(emu.requests.some((r) => r.path.endsWith("instance/region") && r.status === 200));
  });
});

test("a certificate with one OU per RDN and an opc-identity tenancy works too", async () => {
  await withEmulator(
    { multiValuedRdn: false, tenantPrefix: "opc-identity" },
    async (emu, cacheDir) => {
      credentialsFor(
        await provide(emu, cacheDir, `iad.ocir.io/${emu.namespace}/app:1`),
        "iad.ocir.io",
      );
    },
  );
});

test("a foreign host gets no credentials, a warning, and not a single request", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    for (
      const image of [
        "docker.io/library/nginx:1",
        "nginx",
        "ghcr.io/a/b",
        "iad.ocir.io.evil.com/ns/app",
        "iad.ocir.io:5000/ns/app",
      ]
    ) {
      const run = await provide(emu, cacheDir, image);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(run.response, {
        apiVersion: API_VERSIONS[0],
        kind: "CredentialProviderResponse",
        cacheKeyType: "Registry",
        cacheDuration: "0s",
        auth: {},
      });
      assert.match(
        run.stderr,
        /^oke-credential-provider level=warn step=image msg=".* is not an OCIR registry host: answering with no credentials"\n$/,
      );
    }
    assert.deepEqual(emu.requests, []);
    assert.deepEqual(emu.connects, []);
  });
});

test("bad stdin: one clear line on stderr, nothing on stdout, exit 1, nothing sent", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    const table: [string, string | Uint8Array, RegExp][] = [
      ["empty", "", /stdin is empty/],
      ["not JSON", "hello", /stdin is not JSON/],
      [
        "wrong kind",
        JSON.stringify({ apiVersion: API_VERSIONS[0], kind: "Pod", image: "iad.ocir.io/a/b" }),
        /kind is .Pod., expected .CredentialProviderRequest./,
      ],
      [
        "wrong apiVersion",
        JSON.stringify({
          apiVersion: "v1",
          kind: "CredentialProviderRequest",
          image: "iad.ocir.io/a/b",
        }),
        /apiVersion .v1. is not one of/,
      ],
      [
        "no image",
        JSON.stringify({ apiVersion: API_VERSIONS[0], kind: "CredentialProviderRequest" }),
        /names no image/,
      ],
      ["over 1 MiB", new Uint8Array(1024 * 1024 + 1).fill(0x20), /larger than 1048576 bytes/],
      [
        "a bad image",
        kubeletRequest("iad.ocir.io/NS/App"),
        /step=image msg="image reference .* has an invalid repository path"/,
      ],
    ];
    for (const [name, stdin, pattern] of table) {
      const run = await runPlugin({ stdin, env: emu.env, args: ["--cache-dir", cacheDir] });
      assert.equal(run.code, 1, name);
      assert.equal(run.stdout, "", name);
      const lines = run.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, `${name}: ${run.stderr}`);
      assert.match(lines[0], /^oke-credential-provider level=error step=(request|image) /, name);
      assert.match(lines[0], pattern, name);
    }
    assert.deepEqual(emu.requests, []);
  });
});

test("a rotated certificate drops the cached tokens and federates again", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    credentialsFor(await provide(emu, cacheDir, `iad.ocir.io/${emu.namespace}/a:1`), "iad.ocir.io");
    await emu.rotateLeaf();
    // A host with no cached token takes the cold path, which sees the new fingerprint.
    credentialsFor(
      await provide(emu, cacheDir, `us-ashburn-1.ocir.io/${emu.namespace}/a:1`),
      "us-ashburn-1.ocir.io",
    );
    assert.equal(emu.counters.federations, 2);
    // The tokens made with the old certificate are gone; the record of the calls stays.
    await assertCachedFiles(cacheDir, "us-ashburn-1.ocir.io");
  });
});

test("a corrupt cache is ignored and rewritten", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    await Deno.writeTextFile(
      `${cacheDir}/docker-iad.ocir.io.json`,
      '{"host":"iad.ocir.io","token":',
    );
    await Deno.writeTextFile(`${cacheDir}/session.json`, "\u0000\u0000");
    credentialsFor(await provide(emu, cacheDir, `iad.ocir.io/${emu.namespace}/a:1`), "iad.ocir.io");
    assert.equal(
      JSON.parse(await Deno.readTextFile(`${cacheDir}/docker-iad.ocir.io.json`)).host,
      "iad.ocir.io",
    );
    assert.equal(emu.counters.federations, 1);
  });
});

test("a cache directory that is a file: the plugin still answers, without caching, and says so", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    const file = `${cacheDir}/not-a-dir`;
    await Deno.writeTextFile(file, "");
    for (let i = 1; i <= 2; i++) {
      const run = await runPlugin({
        stdin: kubeletRequest(`iad.ocir.io/${emu.namespace}/a:1`),
        env: emu.env,
        args: ["--cache-dir", file],
      });
      assert.equal(run.code, 0, run.stderr);
      assert.ok(run.response!.auth["iad.ocir.io"].password);
      assert.match(
        run.stderr,
        /^oke-credential-provider level=warn step=cache msg="cannot use cache directory .*not-a-dir .*answering without caching"\n$/,
      );
      assert.equal(emu.counters.federations, i, "nothing is cached");
    }
  });
});

test("processes started together for one registry all succeed, and only one federates", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    const runs = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => provide(emu, cacheDir, `iad.ocir.io/${emu.namespace}/app${i}:1`),
      ),
    );
    const passwords = new Set(runs.map((run) => credentialsFor(run, "iad.ocir.io")));
    assert.equal(passwords.size, 1);
    assert.equal(emu.counters.federations, 1);
    assert.equal(emu.counters.dockerTokens, 1);
  });
});

test("a cached security token that OCIR refuses is replaced once by a fresh federation", async () => {
  await withEmulator({}, async (emu, cacheDir) => {
    const image = `iad.ocir.io/${emu.namespace}/app:1`;
    credentialsFor(await provide(emu, cacheDir, image), "iad.ocir.io");
    await Deno.remove(`${cacheDir}/docker-iad.ocir.io.json`); // the session stays cached
    const tokenRequests = () =>
      emu.requests.filter((r) => r.service === "ocir" && r.path === "/20180419/docker/token");

    emu.fault("ocir:/docker/token", { status: [401] });
    credentialsFor(await provide(emu, cacheDir, image), "iad.ocir.io");
    assert.equal(emu.counters.federations, 2);
    assert.deepEqual(tokenRequests().slice(-2).map((r) => r.status), [401, 200]);

    // Refused again with the fresh token: that is the policy, said once, and no third federation.
    await Deno.remove(`${cacheDir}/docker-iad.ocir.io.json`);
    emu.fault("ocir:/docker/token", { status: [401, 401] });
    const refused = await provide(emu, cacheDir, image);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
    assert.match(
      refused.stderr,
      /^oke-credential-provider level=error step=OCIR-token host=iad\.ocir\.io msg="HTTP 401.*dynamic group/,
    );
    assert.equal(emu.counters.federations, 3);
    assert.deepEqual(tokenRequests().slice(-2).map((r) => r.status), [401, 401]);
  });
});
