/**
 * Runs the real cloud-init/cloud-init.sh with bash against a temporary root, a loopback HTTP
 * server standing in for the release download site and the instance metadata service, a fake
 * `uname` and a stub oke-init.sh that records its arguments.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import {
  binaryAsset,
  CLOUD_INIT_ASSET,
  CONFIG_ASSET,
  embedChecksums,
  sha256sums,
  SUMS_ASSET,
  WORKLOAD_CONFIG_ASSET,
} from "../scripts/build.ts";
import { parseOptions } from "../lib/options.ts";

const SCRIPT = fileURLToPath(new URL("../cloud-init/cloud-init.sh", import.meta.url));
const CONFIG_TEXT = Deno.readTextFileSync(
  new URL("../config/credential-provider-config.yaml", import.meta.url),
);
const WORKLOAD_CONFIG_TEXT = Deno.readTextFileSync(
  new URL("../config/credential-provider-config-workload.yaml", import.meta.url),
);
const FLAGS = "--image-credential-provider-config=/etc/kubernetes/credential-provider-config.yaml" +
  " --image-credential-provider-bin-dir=/usr/local/bin";
const BIN = "usr/local/bin/oke-credential-provider";
const CONFIG = "etc/kubernetes/credential-provider-config.yaml";
const OKE_INIT = "var/run/oke-init.sh";

interface Ctx {
  dir: string;
  root: string;
  tmp: string;
  /** Release files the server hands out, by asset name; tests tamper with them. */
  files: Map<string, Uint8Array<ArrayBuffer>>;
  /** Paths the server was asked for, with the Authorization header. */
  requests: { path: string; auth: string | null }[];
  baseUrl: string;
  imdsUrl: string;
}

const text = (s: string) => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function releaseFiles(): Map<string, Uint8Array<ArrayBuffer>> {
  const files = new Map<string, Uint8Array<ArrayBuffer>>([
    // Named as scripts/build.ts names the release assets, so the two cannot drift apart.
    [binaryAsset("amd64"), text("fake amd64 binary\n")],
    [binaryAsset("arm64"), text("fake arm64 binary\n")],
    [CONFIG_ASSET, text(CONFIG_TEXT)],
    [WORKLOAD_CONFIG_ASSET, text(WORKLOAD_CONFIG_TEXT)],
    [CLOUD_INIT_ASSET, Deno.readFileSync(SCRIPT)],
  ]);
  const sums = [...files].map(([name, data]) => `${sha256(data)}  ${name}\n`).join("");
  files.set(SUMS_ASSET, text(sums));
  return files;
}

/** Sets up a temporary root and server, runs `body`, and always cleans up. */
async function withNode(body: (ctx: Ctx) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cloud-init-test-" });
  const ctx: Ctx = {
    dir,
    root: `${dir}/root`,
    tmp: `${dir}/tmp`,
    files: releaseFiles(),
    requests: [],
    baseUrl: "",
    imdsUrl: "",
  };
  for (const d of [ctx.root, ctx.tmp, `${dir}/fakebin`]) await Deno.mkdir(d);
  // A fake uname, found first on PATH, so every architecture can be tried on this machine.
  await Deno.writeTextFile(`${dir}/fakebin/uname`, '#!/bin/sh\necho "$FAKE_UNAME_M"\n', {
    mode: 0o755,
  });
  // OKE's bootstrap stand-in: records each argument on its own line, and each run.
  const stub =
    `#!/bin/bash\nprintf '%s\\n' "$@" > ${dir}/oke-init-args\necho run >> ${dir}/oke-init-runs\n`;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    ctx.requests.push({ path, auth: req.headers.get("authorization") });
    if (path === "/opc/v2/instance/metadata/oke_init_script") {
      if (req.headers.get("authorization") !== "Bearer Oracle") {
        return new Response("unauthorized", { status: 401 });
      }
      return new Response(btoa(stub));
    }
    const release = /^\/download\/v9\.9\.9\/([^/]+)$/.exec(path);
    const file = release && ctx.files.get(release[1]);
    return file ? new Response(file) : new Response("not found", { status: 404 });
  });
  const origin = `http://127.0.0.1:${server.addr.port}`;
  ctx.baseUrl = `${origin}/download/v9.9.9`;
  ctx.imdsUrl = `${origin}/opc/v2`;
  try {
    await body(ctx);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

interface Run {
  code: number;
  stderr: string;
}

/** Runs the script as cloud-init would, with only the environment given here. */
async function runScript(
  ctx: Ctx,
  arch: string,
  env: Record<string, string> = {},
  script = SCRIPT,
): Promise<Run> {
  const out = await new Deno.Command("bash", {
    args: [script],
    clearEnv: true,
    env: {
      PATH: `${ctx.dir}/fakebin:${Deno.env.get("PATH")}`,
      FAKE_UNAME_M: arch,
      TMPDIR: ctx.tmp,
      OKE_CP_ROOT: ctx.root,
      OKE_CP_BASE_URL: ctx.baseUrl,
      OKE_CP_IMDS_URL: ctx.imdsUrl,
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** Every file and directory under `dir`, relative, with its permission bits. */
async function tree(dir: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    const info = await Deno.lstat(`${dir}/${rel}`);
    out[rel] = (info.mode! & 0o777).toString(8).padStart(4, "0");
    if (e.isDirectory) Object.assign(out, await tree(dir, rel));
  }
  return out;
}

async function installedFiles(ctx: Ctx): Promise<Record<string, string>> {
  const all = await tree(ctx.root);
  return Object.fromEntries(Object.entries(all).filter(([p]) => [BIN, CONFIG].includes(p)));
}

async function recordedArgs(ctx: Ctx): Promise<string[]> {
  return (await Deno.readTextFile(`${ctx.dir}/oke-init-args`)).replace(/\n$/, "").split("\n");
}

async function okeInitRuns(ctx: Ctx): Promise<number> {
  try {
    return (await Deno.readTextFile(`${ctx.dir}/oke-init-runs`)).trim().split("\n").length;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

/** The outcome of a refused install: non-zero exit, an empty root, no bootstrap, no leftovers. */
async function assertNothingInstalled(ctx: Ctx, run: Run, why: RegExp): Promise<void> {
  assert.notEqual(run.code, 0, run.stderr);
  assert.match(run.stderr, why);
  assert.deepEqual(await tree(ctx.root), {}, "nothing may be installed");
  assert.deepEqual(await tree(ctx.tmp), {}, "the staging directory is removed");
  assert.equal(await okeInitRuns(ctx), 0, "oke-init.sh must not run");
}

Deno.test("cloud-init: installs binary and config, then runs oke-init.sh with both kubelet flags in one argument", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64");
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await installedFiles(ctx), { [BIN]: "0755", [CONFIG]: "0644" });
    assert.equal(await Deno.readTextFile(`${ctx.root}/${BIN}`), "fake amd64 binary\n");
    assert.equal(await Deno.readTextFile(`${ctx.root}/${CONFIG}`), CONFIG_TEXT);
    assert.deepEqual(await recordedArgs(ctx), ["--kubelet-extra-args", FLAGS]);
    assert.equal(await okeInitRuns(ctx), 1);
    // OKE's script came from IMDS v2 with its required header.
    const imds = ctx.requests.filter((r) => r.path.startsWith("/opc/v2/"));
    assert.deepEqual(imds, [{
      path: "/opc/v2/instance/metadata/oke_init_script",
      auth: "Bearer Oracle",
    }]);
    assert.ok(await Deno.stat(`${ctx.root}/${OKE_INIT}`));
    assert.deepEqual(await tree(ctx.tmp), {}, "the staging directory is removed");
  });
});

Deno.test("cloud-init: the kubelet flags point at what was installed, under the provider's name", async () => {
  await withNode(async (ctx) => {
    assert.equal((await runScript(ctx, "x86_64")).code, 0);
    const [, flags] = await recordedArgs(ctx);
    const flag = (name: string) =>
      flags.split(" ").find((f) => f.startsWith(`${name}=`))!.split("=")[1];
    const providers = parse(CONFIG_TEXT).providers as { name: string }[];
    // Kubelet runs <bin dir>/<provider name>: that file must be the installed binary.
    const binary = `${ctx.root}${flag("--image-credential-provider-bin-dir")}/${providers[0].name}`;
    assert.equal(await Deno.readTextFile(binary), "fake amd64 binary\n");
    assert.equal(
      await Deno.readTextFile(`${ctx.root}${flag("--image-credential-provider-config")}`),
      CONFIG_TEXT,
    );
  });
});

Deno.test("cloud-init: a second run succeeds with the same result", async () => {
  await withNode(async (ctx) => {
    assert.equal((await runScript(ctx, "x86_64")).code, 0);
    const first = await tree(ctx.root);
    const run = await runScript(ctx, "x86_64");
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await tree(ctx.root), first, "same files and modes, no leftovers");
    assert.equal(await Deno.readTextFile(`${ctx.root}/${BIN}`), "fake amd64 binary\n");
    assert.deepEqual(await recordedArgs(ctx), ["--kubelet-extra-args", FLAGS]);
    assert.equal(await okeInitRuns(ctx), 2);
  });
});

Deno.test("cloud-init: aarch64 installs the arm64 binary", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "aarch64");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await Deno.readTextFile(`${ctx.root}/${BIN}`), "fake arm64 binary\n");
    const downloads = ctx.requests.map((r) => r.path).filter((p) => p.startsWith("/download/"));
    assert.ok(!downloads.some((p) => p.endsWith("amd64")), "only the arm64 binary is fetched");
  });
});

Deno.test("cloud-init: an unknown architecture fails clearly and installs nothing", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "riscv64");
    await assertNothingInstalled(ctx, run, /unsupported CPU architecture 'riscv64'/);
    assert.deepEqual(ctx.requests, [], "nothing is downloaded");
  });
});

Deno.test("cloud-init: offline mode installs from a local directory without any download", async () => {
  await withNode(async (ctx) => {
    const local = `${ctx.dir}/local`;
    await Deno.mkdir(local);
    for (const [name, data] of ctx.files) await Deno.writeFile(`${local}/${name}`, data);
    const run = await runScript(ctx, "aarch64", { OKE_CP_LOCAL_DIR: local });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await installedFiles(ctx), { [BIN]: "0755", [CONFIG]: "0644" });
    assert.equal(await Deno.readTextFile(`${ctx.root}/${BIN}`), "fake arm64 binary\n");
    assert.deepEqual(await recordedArgs(ctx), ["--kubelet-extra-args", FLAGS]);
    const downloads = ctx.requests.filter((r) => r.path.startsWith("/download/"));
    assert.deepEqual(downloads, []);
  });
});

Deno.test("cloud-init: a checksum mismatch installs nothing and exits non-zero", async () => {
  for (
    const tampered of [binaryAsset("amd64"), CONFIG_ASSET]
  ) {
    await withNode(async (ctx) => {
      ctx.files.set(tampered, text("tampered\n"));
      const run = await runScript(ctx, "x86_64");
      await assertNothingInstalled(ctx, run, new RegExp(`checksum mismatch for ${tampered}`));
    });
  }
  // The same check applies to files placed on the node beforehand.
  await withNode(async (ctx) => {
    const local = `${ctx.dir}/local`;
    await Deno.mkdir(local);
    for (const [name, data] of ctx.files) await Deno.writeFile(`${local}/${name}`, data);
    await Deno.writeTextFile(`${local}/${binaryAsset("amd64")}`, "tampered\n");
    const run = await runScript(ctx, "x86_64", { OKE_CP_LOCAL_DIR: local });
    await assertNothingInstalled(ctx, run, /checksum mismatch/);
  });
});

Deno.test("cloud-init: a file missing from the release or from SHA256SUMS installs nothing", async () => {
  await withNode(async (ctx) => {
    ctx.files.delete(CONFIG_ASSET);
    const run = await runScript(ctx, "x86_64");
    await assertNothingInstalled(ctx, run, /download of .*credential-provider-config\.yaml failed/);
  });
  await withNode(async (ctx) => {
    const sums = new TextDecoder().decode(ctx.files.get(SUMS_ASSET));
    ctx.files.set(SUMS_ASSET, text(sums.replace(/.*-linux-arm64\n/, "")));
    const run = await runScript(ctx, "aarch64");
    await assertNothingInstalled(
      ctx,
      run,
      /the checksums \(download\) have no entry for oke-credential-provider-linux-arm64/,
    );
  });
});

Deno.test("cloud-init: a copy with the OWNER placeholder and no base URL says what to do", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", { OKE_CP_BASE_URL: "" });
    await assertNothingInstalled(
      ctx,
      run,
      /OWNER placeholder.*OKE_CP_BASE_URL or OKE_CP_LOCAL_DIR/,
    );
    assert.deepEqual(ctx.requests, []);
  });
});

Deno.test("cloud-init: install only, for autoscalers that bootstrap kubelet themselves", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", { OKE_CP_RUN_OKE_INIT: "false" });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await installedFiles(ctx), { [BIN]: "0755", [CONFIG]: "0644" });
    assert.equal(await okeInitRuns(ctx), 0);
    assert.ok(!ctx.requests.some((r) => r.path.startsWith("/opc/")), "IMDS is not asked");
    assert.ok(run.stderr.includes(FLAGS), "the flags to add are printed");
  });
});

Deno.test("cloud-init: extra kubelet flags travel in the same single argument", async () => {
  await withNode(async (ctx) => {
    const extra = "--node-labels=team=a --max-pods=50";
    const run = await runScript(ctx, "x86_64", { OKE_CP_EXTRA_KUBELET_ARGS: extra });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await recordedArgs(ctx), ["--kubelet-extra-args", `${FLAGS} ${extra}`]);
  });
});

/** A directory of links to the commands the script needs, with `downloader` as the only one. */
async function pathWithOnly(ctx: Ctx, downloader: "curl" | "wget" | "none"): Promise<string> {
  const dir = `${ctx.dir}/only-${downloader}`;
  await Deno.mkdir(dir);
  const tools = ["bash", "sha256sum", "base64", "install", "mktemp", "awk", "cp", "mv", "rm"];
  tools.push("mkdir", "dirname", "basename", ...(downloader === "none" ? [] : [downloader]));
  const path = Deno.env.get("PATH")!.split(":");
  for (const tool of tools) {
    const found = path.map((d) => `${d}/${tool}`).find((f) => {
      try {
        return Deno.statSync(f).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(found, `${tool} is needed on this machine`);
    await Deno.symlink(found, `${dir}/${tool}`);
  }
  return `${ctx.dir}/fakebin:${dir}`;
}

Deno.test("cloud-init: works with curl only and with wget only; neither is a clear error", async () => {
  for (const downloader of ["curl", "wget"] as const) {
    await withNode(async (ctx) => {
      const run = await runScript(ctx, "x86_64", { PATH: await pathWithOnly(ctx, downloader) });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, new RegExp(`from ${ctx.baseUrl} with ${downloader}`));
      assert.deepEqual(await installedFiles(ctx), { [BIN]: "0755", [CONFIG]: "0644" });
      assert.deepEqual(await recordedArgs(ctx), ["--kubelet-extra-args", FLAGS]);
      // OKE's script came from IMDS with the header it requires, whichever tool asked.
      assert.deepEqual(ctx.requests.filter((r) => r.path.startsWith("/opc/")), [{
        path: "/opc/v2/instance/metadata/oke_init_script",
        auth: "Bearer Oracle",
      }]);
    });
  }
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", { PATH: await pathWithOnly(ctx, "none") });
    await assertNothingInstalled(ctx, run, /neither curl nor wget is installed: install one/);
  });
});

/** The script as the release build writes it: with the checksums of the served files. */
async function releasedScript(ctx: Ctx): Promise<string> {
  const installed = [binaryAsset("amd64"), binaryAsset("arm64"), CONFIG_ASSET];
  const sums = sha256sums(installed.map((name) => ({ name, data: ctx.files.get(name)! })));
  const path = `${ctx.dir}/released-cloud-init.sh`;
  await Deno.writeTextFile(path, embedChecksums(await Deno.readTextFile(SCRIPT), sums));
  return path;
}

Deno.test("cloud-init: a release's copy checks against its own checksums, not the download site's", async () => {
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", {}, await releasedScript(ctx));
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await Deno.readTextFile(`${ctx.root}/${BIN}`), "fake amd64 binary\n");
    const asked = ctx.requests.map((r) => r.path);
    assert.ok(!asked.some((p) => p.endsWith(`/${SUMS_ASSET}`)), "SHA256SUMS is not needed");
  });
  // Whoever controls the download site serves a binary of theirs with a SHA256SUMS to match.
  await withNode(async (ctx) => {
    const script = await releasedScript(ctx);
    ctx.files.set(binaryAsset("amd64"), text("planted binary\n"));
    const files = [...ctx.files].filter(([name]) => name !== SUMS_ASSET);
    ctx.files.set(SUMS_ASSET, text(sha256sums(files.map(([name, data]) => ({ name, data })))));
    const run = await runScript(ctx, "x86_64", {}, script);
    await assertNothingInstalled(
      ctx,
      run,
      new RegExp(`checksum mismatch for ${binaryAsset("amd64")}`),
    );
  });
  // Another version than the script's release: its SHA256SUMS is the only reference there is.
  await withNode(async (ctx) => {
    const run = await runScript(
      ctx,
      "x86_64",
      { OKE_CP_VERSION: "v9.9.9" },
      await releasedScript(ctx),
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /is not this script's release \(v0\.1\.0\): checking against its SHA256SUMS/,
    );
  });
});

Deno.test("cloud-init: shellcheck finds nothing", async () => {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("shellcheck", { args: [SCRIPT], stdout: "piped" }).output();
  } catch (e) {
    // Not skipped when missing: a test that passes without checking would hide the gap.
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("shellcheck is not installed (apt-get install -y shellcheck)");
    }
    throw e;
  }
  assert.equal(out.code, 0, new TextDecoder().decode(out.stdout));
});

Deno.test("cloud-init: warms the token cache in the background, never holding up nor failing the bootstrap", async () => {
  await withNode(async (ctx) => {
    // A release "binary" that records how it was started, then takes far longer than allowed.
    const binary = text(
      `#!/bin/sh\necho "$@" > ${ctx.dir}/warm-args\nsleep 30\necho finished >> ${ctx.dir}/warm-args\n`,
    );
    ctx.files.set(binaryAsset("amd64"), binary);
    const sums = [...ctx.files].filter(([name]) => name !== SUMS_ASSET)
      .map(([name, data]) => `${sha256(data)}  ${name}\n`).join("");
    ctx.files.set(SUMS_ASSET, text(sums));
    const run = await runScript(ctx, "x86_64", { OKE_CP_WARM_TIMEOUT: "2" });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await okeInitRuns(ctx), 1, "the bootstrap went on");
    assert.match(run.stderr, /warming the token cache in the background \(at most 2 s/);
    let args = "";
    for (let i = 0; i < 100 && !args; i++) {
      args = await Deno.readTextFile(`${ctx.dir}/warm-args`).catch(() => "");
      if (!args) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(args, "warm\n", "started, and not waited for");
    // Bounded: timeout ends it long before its 30 s, and the log says so.
    const log = `${ctx.root}/var/log/oke-credential-provider-warm.log`;
    let logged = "";
    for (let i = 0; i < 100 && !logged.includes("status"); i++) {
      logged = await Deno.readTextFile(log).catch(() => "");
      if (!logged.includes("status")) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.match(logged, /warm ended with status 124/);
    assert.equal(await Deno.readTextFile(`${ctx.dir}/warm-args`), "warm\n", "it was stopped");
    const off = await runScript(ctx, "x86_64", { OKE_CP_WARM: "false" });
    assert.equal(off.code, 0, off.stderr);
    assert.ok(!off.stderr.includes("warming"), "OKE_CP_WARM=false skips it");
  });
});

Deno.test("cloud-init: OKE_CP_WORKLOAD_IDENTITY installs the per-workload config with this node's settings", async () => {
  const installed = async (ctx: Ctx) =>
    parse(await Deno.readTextFile(`${ctx.root}/${CONFIG}`), { version: "1.1" });
  /** The plugin's options from the installed config's env, as kubelet passes them. */
  const optionsOf = async (config: Record<string, unknown>) => {
    const [provider] = config.providers as { env: { name: string; value: string }[] }[];
    const env = Object.fromEntries(provider.env.map((e) => [e.name, e.value]));
    return await parseOptions([], (name) => env[name]);
  };
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", {
      OKE_CP_WORKLOAD_IDENTITY: "oke",
      OKE_CP_PROXYMUX_URL: "https://10.0.0.9:12250/resourcePrincipalSessionTokens",
      OKE_CP_NODE_IDENTITY: "deny",
      OKE_CP_TOKEN_AUDIENCE: "https://kubernetes.default.svc",
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /kubelet must be 1\.34 or newer/);
    const config = await installed(ctx);
    const [provider] = config.providers;
    assert.equal(
      provider.tokenAttributes.serviceAccountTokenAudience,
      "https://kubernetes.default.svc",
    );
    assert.equal(provider.tokenAttributes.cacheType, "ServiceAccount");
    const options = await optionsOf(config);
    assert.equal(options.workloadIdentity, "oke");
    assert.equal(options.nodeIdentity, "deny");
    assert.equal(options.proxymuxUrl, "https://10.0.0.9:12250/resourcePrincipalSessionTokens");
    assert.equal(options.clusterCa, "/etc/kubernetes/ca.crt");
    assert.ok(ctx.requests.some((r) => r.path.endsWith(`/${WORKLOAD_CONFIG_ASSET}`)));
  });
  await withNode(async (ctx) => {
    const run = await runScript(ctx, "x86_64", {
      OKE_CP_WORKLOAD_IDENTITY: "federation",
      OKE_CP_IDENTITY_DOMAIN_URL: "https://idcs-0123.identity.oraclecloud.com",
      OKE_CP_FEDERATION_TOKEN_TYPE: "rpst",
    });
    assert.equal(run.code, 0, run.stderr);
    const config = await installed(ctx);
    const options = await optionsOf(config);
    assert.equal(options.workloadIdentity, "federation");
    assert.equal(options.identityDomainUrl, "https://idcs-0123.identity.oraclecloud.com/");
    assert.equal(options.federationTokenType, "rpst");
    assert.equal(options.nodeIdentity, "allow");
    assert.equal(
      config.providers[0].tokenAttributes.serviceAccountTokenAudience,
      parse(WORKLOAD_CONFIG_TEXT).providers[0].tokenAttributes.serviceAccountTokenAudience,
    );
  });
});

Deno.test("cloud-init: bad per-workload settings fail clearly before anything is installed", async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ OKE_CP_WORKLOAD_IDENTITY: "gke" }, /must be oke or federation/],
    [{ OKE_CP_WORKLOAD_IDENTITY: "oke" }, /needs OKE_CP_PROXYMUX_URL/],
    [
      { OKE_CP_WORKLOAD_IDENTITY: "oke", OKE_CP_PROXYMUX_URL: "http://10.0.0.9:12250/x" },
      /needs OKE_CP_PROXYMUX_URL/,
    ],
    [{ OKE_CP_WORKLOAD_IDENTITY: "federation" }, /needs OKE_CP_IDENTITY_DOMAIN_URL/],
    [{
      OKE_CP_WORKLOAD_IDENTITY: "federation",
      OKE_CP_IDENTITY_DOMAIN_URL: "https://idcs-1.identity.oraclecloud.com",
      OKE_CP_FEDERATION_TOKEN_TYPE: "jwt",
    }, /upst or rpst/],
    [{
      OKE_CP_WORKLOAD_IDENTITY: "oke",
      OKE_CP_PROXYMUX_URL: "https://10.0.0.9:12250/x",
      OKE_CP_NODE_IDENTITY: "maybe",
    }, /allow or deny/],
    [{
      OKE_CP_WORKLOAD_IDENTITY: "oke",
      OKE_CP_PROXYMUX_URL: 'https://10.0.0.9:12250/x"; evil: "',
    }, /needs OKE_CP_PROXYMUX_URL/],
  ];
  for (const [env, why] of cases) {
    await withNode(async (ctx) => {
      const run = await runScript(ctx, "x86_64", env);
      assert.equal(run.code, 1, JSON.stringify(env));
      assert.match(run.stderr, why);
      assert.deepEqual(await tree(ctx.root), {}, "nothing installed");
      assert.deepEqual(ctx.requests, [], "nothing downloaded");
    });
  }
});
