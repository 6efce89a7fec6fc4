/**
 * End to end through a real registry and a real client (issue 4): a CNCF Distribution registry
 * (Debian's `docker-registry`) whose token realm is the emulated OCIR token endpoint, an image
 * pushed to it, the plugin run as kubelet runs it, and Debian's `skopeo` pulling with the plugin's
 * answer through the emulator's proxy and test CA, as containerd would. Then the ways a pull must
 * fail: a wrong password, an expired docker token, a policy that does not allow this instance, a
 * repository of another tenancy, and OCIR refusing the plugin itself.
 */
import assert from "node:assert/strict";
import { type Emulator, type Policy, startEmulator } from "./emulator/mod.ts";
import { kubeletRequest, makeCacheDir, runPlugin } from "./support/plugin_process.ts";
import { type Distribution, startDistribution } from "./registry/distribution.ts";
import { type OciImage, writeOciLayout } from "./registry/oci_layout.ts";
import { skopeo, type SkopeoEnv, type SkopeoRun } from "./registry/skopeo.ts";
import { toolGate } from "./registry/tools.ts";

const TOOLS = ["docker-registry", "skopeo"];
const HOST = "iad.ocir.io";
const REALM_PATH = "/20180419/docker/token";
/** A namespace the emulated policy never grants: another tenancy's repositories. */
const OTHER_NAMESPACE = "othertenancy";
const TAG = "v1";
/** The name the subprocess test below selects this test by. */
const E2E_NAME = "registry end to end: skopeo pulls with the plugin's credentials";

const gate = toolGate(TOOLS, { PATH: Deno.env.get("PATH"), CI: Deno.env.get("CI") });
if (gate.skipReason) console.error(`skipping "${E2E_NAME}": ${gate.skipReason}`);

Deno.test({
  name: E2E_NAME,
  ignore: gate.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    if (gate.failure) assert.fail(gate.failure);
    // The second emulator issues docker tokens that live 3 s, for the expiry case; the registry
    // trusts both emulators' token CAs (their issuer is the same string).
    const [emu, shortLived] = await Promise.all([
      startEmulator(),
      startEmulator({ dockerTokenTtl: 3 }),
    ]);
    const work = await Deno.makeTempDir({ prefix: "okecp-e2e-" });
    const caches: string[] = [];
    let registry: Distribution | undefined;
    try {
      assert.equal(emu.registryHost, HOST);
      registry = await startDistribution({
        realm: `https://${HOST}${REALM_PATH}`,
        service: HOST,
        issuer: emu.registryIssuer,
        rootCertBundle: emu.registryTokenCa + shortLived.registryTokenCa,
      });
      emu.setRegistryUpstream(HOST, registry.url);
      shortLived.setRegistryUpstream(HOST, registry.url);
      await scenario(t, { emu, shortLived, registry, work, caches });
    } finally {
      await registry?.stop();
      await Promise.all([emu.close(), shortLived.close()]);
      await Deno.remove(work, { recursive: true });
      for (const dir of caches) await Deno.remove(dir, { recursive: true });
    }
  },
});

interface Setup {
  emu: Emulator;
  shortLived: Emulator;
  registry: Distribution;
  work: string;
  /** The plugin cache directories made, removed at the end. */
  caches: string[];
}

async function scenario(t: Deno.TestContext, { emu, shortLived, registry, work, caches }: Setup) {
  const ns = emu.namespace;
  emu.setPolicy(tenancyMayPull(emu));
  const ref = (namespace: string) => `${HOST}/${namespace}/app:${TAG}`;
  let counter = 0;
  /** A fresh directory under work (cache dirs, skopeo scratch space, layouts). */
  const fresh = async (name: string) => {
    const dir = `${work}/${name}-${++counter}`;
    await Deno.mkdir(dir);
    return dir;
  };
  /** A fresh plugin cache directory, where the plugin under test may write. */
  const freshCache = async () => {
    const dir = await makeCacheDir("e2e-");
    caches.push(dir);
    return dir;
  };
  const client = async (e: Emulator): Promise<SkopeoEnv> => ({
    httpsProxy: e.env.HTTPS_PROXY,
    caFile: e.caFile,
    workDir: await fresh("skopeo"),
  });
  const run = async (e: Emulator, args: string[]) => skopeo(args, await client(e));
  /** The plugin's `USER:PASS` for HOST, from a run with a fresh cache. */
  const credentials = async (e: Emulator, image: string) => {
    const result = await runPlugin({
      stdin: kubeletRequest(image),
      env: e.env,
      args: ["--cache-dir", await freshCache()],
    });
    assert.equal(result.code, 0, result.stderr);
    const auth = result.response?.auth[HOST];
    assert.ok(auth, result.stdout);
    assert.equal(auth.username, "BEARER_TOKEN");
    return `${auth.username}:${auth.password}`;
  };
  const inspect = (e: Emulator, image: string, creds: string[]) =>
    run(e, ["inspect", "-n", ...creds, `docker://${image}`]);
  /** Realm requests logged since mark. */
  const realmCalls = (e: Emulator, mark: number) =>
    e.requests.slice(mark).filter((r) => r.service === "ocir" && r.path === REALM_PATH);
  const failsWith = (r: SkopeoRun, ...parts: string[]) => {
    assert.equal(r.code, 1, `skopeo should fail:\n${r.stdout}${r.stderr}`);
    for (const part of parts) assert.match(r.stderr, new RegExp(escape(part)), r.stderr);
  };

  // Each image gets a random file, so skopeo's machine-wide blob-info cache
  // (/var/lib/containers/cache/blob-info-cache-v1.boltdb, not movable by any flag) has never seen
  // its blobs: pushes never try cross-repository mounts, whatever ran before.
  const images = new Map<string, OciImage>();
  await t.step("push a built OCI layout with an admin token", async () => {
    for (const namespace of [ns, OTHER_NAMESPACE]) {
      const image = await writeOciLayout(await fresh("layout"), TAG, {
        "hello.txt": `hello from ${namespace} ${crypto.randomUUID()}\n`,
      });
      const token = await emu.mintRegistryToken(HOST, `repository:${namespace}/app:pull,push`);
      const pushed = await run(emu, [
        "copy",
        "--dest-registry-token",
        token,
        `oci:${image.dir}:${TAG}`,
        `docker://${ref(namespace)}`,
      ]);
      assert.equal(pushed.code, 0, `${pushed.stderr}\nregistry log:\n${registry.logs()}`);
      images.set(namespace, image);
    }
  });
  const pushed = images.get(ns)!;

  let userPass = "";
  await t.step(
    "the plugin's credentials pull the image; the digest is the pushed one",
    async () => {
      userPass = await credentials(emu, ref(ns));
      const mark = emu.requests.length;
      const inspected = await inspect(emu, ref(ns), ["--creds", userPass]);
      assert.equal(inspected.code, 0, inspected.stderr);
      assert.equal(JSON.parse(inspected.stdout).Digest, pushed.manifestDigest);
      const [realm] = realmCalls(emu, mark);
      assert.equal(realm?.status, 200);
      assert.equal(realm.reason, undefined, "the policy granted everything asked");
      assert.equal(
        new URLSearchParams(realm.query).get("scope"),
        `repository:${ns}/app:pull`,
      );

      // A full pull, blobs included, as containerd does it.
      const dest = await fresh("pulled");
      const copied = await run(emu, [
        "copy",
        "--src-creds",
        userPass,
        `docker://${ref(ns)}`,
        `oci:${dest}:${TAG}`,
      ]);
      assert.equal(copied.code, 0, copied.stderr);
      const index = JSON.parse(await Deno.readTextFile(`${dest}/index.json`));
      assert.equal(index.manifests[0].digest, pushed.manifestDigest);
      const layer = `${dest}/blobs/sha256/${pushed.layerDigest.slice("sha256:".length)}`;
      assert.ok((await Deno.stat(layer)).isFile, "the layer blob was pulled");
    },
  );

  await t.step("a wrong password: the realm answers 401 invalid username/password", async () => {
    const [header, payload, signature] = password(userPass).split(".");
    // Same claims, another signature: only the signature check can tell.
    const forged = `${header}.${payload}.${[...signature].reverse().join("")}`;
    const mark = emu.requests.length;
    failsWith(
      await inspect(emu, ref(ns), ["--creds", `BEARER_TOKEN:${forged}`]),
      "unable to retrieve auth token: invalid username/password: unauthorized: invalid username/password",
    );
    const [realm] = realmCalls(emu, mark);
    assert.equal(realm?.status, 401);
    assert.match(realm.reason ?? "", /^docker token: signature verification failed/);
  });

  await t.step("an expired docker token: the realm answers 401", async () => {
    const creds = await credentials(shortLived, ref(ns));
    const exp = claims(password(creds)).exp as number;
    // Before expiry it pulls, so what follows is down to time alone.
    const before = await inspect(shortLived, ref(ns), ["--creds", creds]);
    assert.equal(before.code, 0, before.stderr);
    // The realm refuses a token once its clock reaches exp; wait one second past that.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (exp + 1) * 1000 - Date.now())));
    const mark = shortLived.requests.length;
    failsWith(
      await inspect(shortLived, ref(ns), ["--creds", creds]),
      "invalid username/password: unauthorized: invalid username/password",
    );
    const [realm] = realmCalls(shortLived, mark);
    assert.equal(realm?.status, 401);
    assert.match(realm.reason ?? "", /^docker token: "exp" claim timestamp check failed/);
  });

  await t.step("a policy that does not allow this instance: the pull is denied", async () => {
    const others: Policy = (who, repo, action) =>
      who.instanceId !== emu.instance.instanceId && repo.namespace === ns && action === "pull";
    emu.setPolicy(others);
    try {
      const mark = emu.requests.length;
      const logMark = registry.logs().length;
      failsWith(
        await inspect(emu, ref(ns), ["--creds", userPass]),
        `reading manifest ${TAG} in ${HOST}/${ns}/app`,
        "denied: requested access to the resource is denied",
      );
      const [realm] = realmCalls(emu, mark);
      // The realm still answers 200, with a token that leaves the scope out, as OCIR does.
      assert.equal(realm?.status, 200);
      assert.equal(realm.reason, `policy denied repository:${ns}/app:pull`);
      // Distribution saw a valid token without the scope.
      assert.match(registry.logs().slice(logMark), /insufficient scope/);
    } finally {
      emu.setPolicy(tenancyMayPull(emu));
    }
  });

  await t.step("a repository of another tenancy: the pull is denied", async () => {
    const other = ref(OTHER_NAMESPACE);
    // The image is there: an admin token reads it, so the refusal below is the policy's.
    const admin = await emu.mintRegistryToken(HOST, `repository:${OTHER_NAMESPACE}/app:pull`);
    const seen = await inspect(emu, other, ["--registry-token", admin]);
    assert.equal(seen.code, 0, seen.stderr);
    assert.equal(JSON.parse(seen.stdout).Digest, images.get(OTHER_NAMESPACE)!.manifestDigest);

    const mark = emu.requests.length;
    failsWith(
      await inspect(emu, other, ["--creds", userPass]),
      "denied: requested access to the resource is denied",
    );
    const [realm] = realmCalls(emu, mark);
    assert.equal(realm?.status, 200);
    assert.equal(realm.reason, `policy denied repository:${OTHER_NAMESPACE}/app:pull`);
  });

  /** `doctor --image` on this node: its exit code and the manifest line with its fix. */
  const doctor = async (image: string) => {
    const result = await runPlugin({ stdin: "", env: emu.env, args: ["doctor", "--image", image] });
    const lines = result.stdout.split("\n");
    const at = lines.findIndex((l) => l.slice(2).startsWith("manifest"));
    return {
      code: result.code,
      manifest: lines.slice(at, at + 2).join("\n"),
      stdout: result.stdout,
    };
  };
  const checkPull = async () => {
    const cacheDir = await freshCache();
    const result = await runPlugin({
      stdin: kubeletRequest(ref(ns)),
      env: emu.env,
      args: ["--cache-dir", cacheDir, "--check-pull"],
    });
    assert.equal(result.code, 0, result.stderr);
    const entry = JSON.parse(await Deno.readTextFile(`${cacheDir}/docker-${HOST}.json`));
    return { ...result, refreshIn: entry.refreshAt - Date.now() / 1000 };
  };

  await t.step("doctor --image and --check-pull see a readable image as readable", async () => {
    const report = await doctor(ref(ns));
    assert.equal(report.code, 0, report.stdout);
    assert.match(report.manifest, /^✓ manifest +HTTP 200 with the docker token/);
    const missing = await doctor(`${HOST}/${ns}/app:no-such-tag`);
    assert.equal(missing.code, 0, missing.stdout);
    assert.match(missing.manifest, /readable but not found \(HTTP 404/);
    const checked = await checkPull();
    assert.equal(checked.stderr, "");
    assert.match(checked.response!.cacheDuration, /^(1[789]|2[012])m\d+s$/);
    assert.ok(checked.refreshIn > 1000);
  });

  await t.step(
    "a policy that denies: doctor names the fix, --check-pull caches the token 2 minutes only",
    async () => {
      emu.setPolicy(() => false);
      try {
        const report = await doctor(ref(ns));
        assert.equal(report.code, 1);
        assert.match(report.manifest, /^✗ manifest .*HTTP 401 with the docker token/);
        assert.match(
          report.manifest,
          new RegExp(`fix: .*${escape(emu.instance.compartment)}.*read repos`),
        );
        const checked = await checkPull();
        assert.match(checked.response!.cacheDuration, /^(1m5\d|2m0)s$/);
        assert.ok(checked.refreshIn <= 120, `refresh in ${checked.refreshIn} s`);
        assert.match(
          checked.stderr,
          /level=warn step=manifest-check host=iad\.ocir\.io msg="this token cannot read .*app .*it is cached for 120 s only"/,
        );
      } finally {
        emu.setPolicy(tenancyMayPull(emu));
      }
    },
  );

  await t.step("OCIR refuses the plugin (403): it says why, and no pull happens", async () => {
    emu.fault("ocir:/docker/token", { status: [403] });
    let result;
    try {
      result = await runPlugin({
        stdin: kubeletRequest(ref(ns)),
        env: emu.env,
        args: ["--cache-dir", await freshCache()],
      });
    } finally {
      emu.clearFaults();
    }
    assert.notEqual(result.code, 0);
    assert.equal(result.stdout, "", "kubelet gets no credentials");
    for (const part of ["step=OCIR-token", HOST, "403", "dynamic group", "read repos"]) {
      assert.match(result.stderr, new RegExp(escape(part)), result.stderr);
    }
    // Without credentials kubelet pulls anonymously, which the realm refuses. (skopeo prints
    // a bare "unauthorized" when the realm's message is the code's stock "authentication
    // required".)
    const mark = emu.requests.length;
    failsWith(
      await inspect(emu, ref(ns), ["--no-creds"]),
      "unable to retrieve auth token: invalid username/password: unauthorized",
    );
    const [realm] = realmCalls(emu, mark);
    assert.equal(realm?.status, 401);
    assert.equal(realm.reason, "no credentials");
  });
}

/**
 * The policy the steps assume: the instance's compartment may pull in its tenancy's namespace
 * (the emulator's default, stated here because one step replaces it and must put it back).
 */
function tenancyMayPull(emu: Emulator): Policy {
  return (who, repo, action) =>
    who.tenancy === emu.instance.tenancy && who.compartment === emu.instance.compartment &&
    repo.namespace === emu.namespace && action === "pull";
}

/** The password of `USER:PASS`. */
function password(userPass: string): string {
  return userPass.slice(userPass.indexOf(":") + 1);
}

/** The (unverified) claims of a JWT. */
function claims(jwt: string): Record<string, unknown> {
  const payload = jwt.split(".")[1];
  return JSON.parse(
    new TextDecoder().decode(Uint8Array.fromBase64(payload, { alphabet: "base64url" })),
  );
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("tool gate: a missing tool fails under CI and skips elsewhere", async () => {
  const dir = await Deno.makeTempDir({ prefix: "okecp-path-" });
  try {
    // A PATH holding a docker-registry but no skopeo.
    await Deno.writeTextFile(`${dir}/docker-registry`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/skopeo`, "not executable\n", { mode: 0o644 });
    const ci = toolGate(TOOLS, { PATH: dir, CI: "true" });
    assert.deepEqual(ci.missing, ["skopeo"]);
    assert.equal(ci.ignore, false, "never a skip under CI");
    assert.match(ci.failure ?? "", /skopeo not found in PATH/);

    const local = toolGate(TOOLS, { PATH: dir });
    assert.equal(local.ignore, true);
    assert.equal(local.failure, undefined);
    assert.match(local.skipReason ?? "", /skopeo not found in PATH/);

    await Deno.chmod(`${dir}/skopeo`, 0o755);
    assert.deepEqual(toolGate(TOOLS, { PATH: dir, CI: "true" }), { missing: [], ignore: false });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tool gate: with CI=true and no skopeo in PATH, the end-to-end test fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "okecp-path-" });
  try {
    await Deno.writeTextFile(`${dir}/docker-registry`, "#!/bin/sh\n", { mode: 0o755 });
    const file = new URL(import.meta.url).pathname;
    const runThisTest = (ci: Record<string, string>) =>
      new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "--no-check", "--filter", E2E_NAME, file],
        clearEnv: true,
        env: {
          ...Object.fromEntries(
            ["HOME", "DENO_DIR"].flatMap((n) => {
              const v = Deno.env.get(n);
              return v === undefined ? [] : [[n, v]];
            }),
          ),
          DENO_NO_UPDATE_CHECK: "1",
          NO_COLOR: "1",
          PATH: dir,
          ...ci,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const [underCi, local] = await Promise.all([runThisTest({ CI: "true" }), runThisTest({})]);
    const text = (o: Deno.CommandOutput) =>
      new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    assert.notEqual(underCi.code, 0, text(underCi));
    assert.match(text(underCi), /skopeo not found in PATH: under CI a missing tool fails the test/);
    assert.match(text(underCi), /FAILED \| 0 passed \| 1 failed/);
    assert.equal(local.code, 0, text(local));
    assert.match(text(local), /skopeo not found in PATH/);
    assert.match(text(local), /ok \| 0 passed \| 0 failed \| 1 ignored/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
