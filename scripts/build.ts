/**
 * `deno task build`: compiles the plugin for Linux amd64 and arm64 into `dist/`, copies the
 * kubelet config and cloud-init script beside the binaries (the script with the checksums of the
 * binaries and config written into it), and writes `SHA256SUMS`. These are
 * the release assets, under the names the README and cloud-init.sh use.
 *
 * `deno compile` downloads its runtime (`denort`) from dl.deno.land. Where that is unreachable,
 * the build stops with one line saying so; `DENORT_BIN_AMD64` / `DENORT_BIN_ARM64` (or
 * `DENORT_BIN`, for every target) name a denort already on disk instead.
 *
 * Flags: `--out-dir DIR` (default dist), `--arch amd64|arm64` (default both),
 * `--release-tag TAG` and `--repo OWNER/NAME` (written into the copied cloud-init.sh as its pinned
 * release, so a release's cloud-init.sh downloads that release).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEFAULT_CACHE_DIR } from "../lib/cache.ts";
import { ENV_VARIABLES } from "../lib/options.ts";

/**
 * Every environment variable the plugin reads, and nothing else: reading one that is not listed
 * fails in the compiled binary. tests/build_test.ts checks this covers the names read in lib/ and
 * mod.ts. DENO_CERT is absent on purpose, and the proxy variables are there only for proxymux
 * (lib/options.ts says why): Deno's runtime applies them itself without any permission. The list is `ENV_VARIABLES` of
 * lib/options.ts, beside the code that reads them (a refresh process is given the same); add one
 * there only if the plugin's own code starts reading it (e.g. to report it in `doctor`).
 */
export const ALLOWED_ENV = ENV_VARIABLES;

/**
 * Files the plugin may read and write: its cache directory and nothing else on the node
 * (kubelet's own credentials in /var/lib/kubelet and /etc/kubernetes above all are out of reach
 * of the plugin and its dependencies). No /tmp: a directory every user can write is no place for
 * root's tokens. A `--cache-dir` elsewhere fails with a permission error in the compiled binary
 * (the plugin then answers without caching); mount the desired storage at the default path.
 */
export const ALLOWED_PATHS = [DEFAULT_CACHE_DIR] as const;

/** Where cloud-init and the README install the binary (kubelet's bin dir). */
export const INSTALL_PATH = "/usr/local/bin/oke-credential-provider";

/**
 * Write only: the usual directories of node_exporter's textfile collector (upstream's docs, and
 * Debian's package), for `status --prometheus FILE`.
 */
export const METRICS_PATHS = [
  "/var/lib/node_exporter/textfile_collector",
  "/var/lib/prometheus/node-exporter",
] as const;

/**
 * Read-only besides the writable paths: the cluster CA at its default path (lib/options.ts
 * DEFAULT_CLUSTER_CA), the only trust for proxymux under per-workload identity. Just that file,
 * not /etc/kubernetes, which holds kubelet's own credentials.
 */
export const READ_ONLY_PATHS = ["/etc/kubernetes/ca.crt"] as const;

/**
 * Deno permissions for a plugin that may read and write `paths` and read `readOnly`; the release
 * binaries bake in {@linkcode PERMISSION_FLAGS}, this set for the default cache directory and the
 * default cluster CA, and the tests substitute their own cache root
 * (tests/support/plugin_process.ts). Every test that starts the plugin runs
 * with exactly these, so a permission a feature lacks fails there first. Adding one is one line
 * below, in its narrowest form, with its reason beside it. A flag naming a path the tests must
 * swap as they swap the cache path (`--allow-run` of the binary's own path, for a detached
 * refresh) takes that path as a parameter here, so the tests can name the program they run.
 *
 * `--allow-net` has no host list because the hosts are open-ended: every region's OCIR and auth
 * endpoints in every realm, dedicated realms no table knows, IMDS, and the URLs given by
 * OCI_METADATA_BASE_URL / OCI_SDK_AUTH_CLIENT_REGION_URL; the plugin's own code decides which
 * hosts receive a token (lib/image.ts, trustedRegistry). `--allow-run` names one program, the
 * plugin itself (`self`): a stale token is refreshed by the same binary run detached as `refresh`
 * (lib/refresh.ts), so that kubelet never waits for it; installed elsewhere, the binary still
 * answers but refreshes only when kubelet waits (`doctor` says so). No --allow-ffi.
 *
 * @example
 * ```ts
 * permissionFlags([await Deno.makeTempDir()], Deno.execPath()); // a test's cache, deno as itself
 * ```
 */
export function permissionFlags(
  paths: readonly string[] = ALLOWED_PATHS,
  self: string = INSTALL_PATH,
  readOnly: readonly string[] = READ_ONLY_PATHS,
): string[] {
  return [
    "--allow-net",
    `--allow-env=${ALLOWED_ENV.join(",")}`,
    `--allow-read=${[...paths, ...readOnly].join(",")}`, // the cache; the cluster CA, read-only
    // ... and node_exporter's textfile directories, for `status --prometheus FILE`
    `--allow-write=${[...paths, ...METRICS_PATHS].join(",")}`,
    // the uid: the cache must belong to the process's own user; the uptime: `status` counts
    // calls since boot (Deno reads no /proc file, a boot id, without full access)
    "--allow-sys=uid,osUptime",
    // only the plugin itself (`self`, by default its install path), to start the detached refresh
    `--allow-run=${self}`,
    "--deny-import", // no code is loaded from the network at run time; all of it is embedded
    "--no-prompt", // nobody can answer a prompt under kubelet
  ];
}

/** The permissions baked into the release binaries. */
export const PERMISSION_FLAGS: readonly string[] = permissionFlags();

/** Release architectures, their Rust target triples and ELF `e_machine` values. */
export const TARGETS = {
  amd64: { triple: "x86_64-unknown-linux-gnu", elfMachine: 62 },
  arm64: { triple: "aarch64-unknown-linux-gnu", elfMachine: 183 },
} as const;
export type Arch = keyof typeof TARGETS;

/** Release asset names; cloud-init.sh, release.yml and the README use exactly these. */
export const binaryAsset = (arch: Arch) => `oke-credential-provider-linux-${arch}`;
export const CONFIG_ASSET = "credential-provider-config.yaml";
/** The opt-in per-workload identity config (kubelet >= 1.34). */
export const WORKLOAD_CONFIG_ASSET = "credential-provider-config-workload.yaml";
export const CLOUD_INIT_ASSET = "cloud-init.sh";
export const SUMS_ASSET = "SHA256SUMS";
export const RELEASE_ASSETS = [
  binaryAsset("amd64"),
  binaryAsset("arm64"),
  CONFIG_ASSET,
  WORKLOAD_CONFIG_ASSET,
  CLOUD_INIT_ASSET,
  SUMS_ASSET,
] as const;

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A failure the build explains in one line. */
export class BuildError extends Error {}

/** The `deno compile` arguments for one architecture. */
export function compileArgs(arch: Arch, output: string): string[] {
  return [
    "compile",
    "--target",
    TARGETS[arch].triple,
    ...permissionFlags(),
    "--frozen", // a release builds exactly the locked dependencies
    // deno.json also names test-only npm packages (oci-common, fast-check, …): embed only what
    // mod.ts reaches.
    "--exclude-unused-npm",
    "--output",
    output,
    "mod.ts",
  ];
}

// Printed by `deno repl` and so present in the deno CLI binary, but not in denort, which has
// no REPL. A binary built on the CLI starts that REPL instead of the plugin.
const DENO_CLI_MARKER = "REPL is running with all permissions allowed";

/**
 * Checks that `path` can serve as the denort runtime for `arch`; returns the problem, or
 * undefined. `deno compile` uses DENORT_BIN whatever the target, so a wrong file silently makes
 * a binary for the wrong CPU, or (with the full deno CLI) one that starts a REPL.
 */
export async function runtimeProblem(path: string, arch: Arch): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    return `cannot read ${path}: ${(e as Error).message}`;
  }
  const isElf64Le = bytes.length >= 20 && bytes[0] === 0x7f && bytes[1] === 0x45 &&
    bytes[2] === 0x4c && bytes[3] === 0x46 && bytes[4] === 2 && bytes[5] === 1;
  if (!isElf64Le) return `${path} is not a 64-bit Linux executable`;
  const machine = bytes[18] | (bytes[19] << 8);
  if (machine !== TARGETS[arch].elfMachine) {
    const found = Object.entries(TARGETS).find(([, t]) => t.elfMachine === machine)?.[0] ??
      `ELF machine ${machine}`;
    return `${path} is built for ${found}, not ${arch}`;
  }
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).includes(DENO_CLI_MARKER)) {
    return `${path} is the full deno CLI, not denort: a binary built on it starts a REPL instead of the plugin`;
  }
  return undefined;
}

/** Which runtime file the build uses for `arch`, and the variable that named it. */
export function runtimeFor(
  arch: Arch,
  env: (name: string) => string | undefined,
): { variable: string; path: string } | undefined {
  for (const variable of [`DENORT_BIN_${arch.toUpperCase()}`, "DENORT_BIN"]) {
    const path = env(variable);
    if (path) return { variable, path };
  }
  return undefined;
}

/** Pins the copied cloud-init.sh to a release: its default version and repository. */
export function stampCloudInit(script: string, tag: string, repo: string): string {
  if (!/^v[0-9A-Za-z.+-]+$/.test(tag)) {
    throw new BuildError(`release tag ${JSON.stringify(tag)} is not like v1.2.3`);
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new BuildError(`repository ${JSON.stringify(repo)} is not OWNER/NAME`);
  }
  const stamped = script
    .replace(
      /^OKE_CP_VERSION="\$\{OKE_CP_VERSION:-[^}]*\}"$/m,
      `OKE_CP_VERSION="\${OKE_CP_VERSION:-${tag}}"`,
    )
    .replace(/^OKE_CP_REPO="\$\{OKE_CP_REPO:-[^}]*\}"$/m, `OKE_CP_REPO="\${OKE_CP_REPO:-${repo}}"`);
  if (!stamped.includes(`:-${tag}}"`) || !stamped.includes(`:-${repo}}"`)) {
    throw new BuildError("cloud-init.sh has no OKE_CP_VERSION / OKE_CP_REPO default line to pin");
  }
  return stamped;
}

/**
 * Writes the release's checksums (sha256sum lines of the binaries and the kubelet config) into
 * cloud-init.sh, with the release tag they belong to (its pinned OKE_CP_VERSION), so that a node
 * checks its downloads against values fixed at release time rather than a SHA256SUMS fetched from
 * the same place as the files.
 *
 * @example
 * ```ts
 * embedChecksums(script, sha256sums([{ name: CONFIG_ASSET, data }]));
 * ```
 */
export function embedChecksums(script: string, sums: string): string {
  const tag = /^OKE_CP_VERSION="\$\{OKE_CP_VERSION:-([^}]*)\}"$/m.exec(script)?.[1];
  if (!tag || !/^RELEASE_TAG=""$/m.test(script) || !/^RELEASE_SHA256SUMS=""$/m.test(script)) {
    throw new BuildError(
      "cloud-init.sh has no OKE_CP_VERSION, RELEASE_TAG or RELEASE_SHA256SUMS line to fill",
    );
  }
  if (!/^([0-9a-f]{64} {2}[\w.-]+\n)+$/.test(sums)) throw new BuildError("malformed checksums");
  return script
    .replace(/^RELEASE_TAG=""$/m, () => `RELEASE_TAG="${tag}"`)
    .replace(/^RELEASE_SHA256SUMS=""$/m, () => `RELEASE_SHA256SUMS="${sums.trimEnd()}"`);
}

const sha256hex = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** `sha256sum` output for the files: `<hex>  <name>` per line. */
export function sha256sums(files: { name: string; data: Uint8Array }[]): string {
  return files.map(({ name, data }) => `${sha256hex(data)}  ${name}\n`).join("");
}

/** Picks and checks the runtime for `arch`; undefined means deno compile downloads it. */
async function checkedRuntime(arch: Arch): Promise<string | undefined> {
  const runtime = runtimeFor(arch, (name) => Deno.env.get(name));
  if (!runtime) return undefined;
  const problem = await runtimeProblem(runtime.path, arch);
  if (problem) {
    const zip = `denort-${TARGETS[arch].triple}.zip`;
    throw new BuildError(
      `${runtime.variable}: ${problem}; use denort from ${zip} of Deno ${Deno.version.deno}`,
    );
  }
  return runtime.path;
}

async function compile(arch: Arch, runtime: string | undefined, outDir: string): Promise<void> {
  const triple = TARGETS[arch].triple;
  const env = Deno.env.toObject();
  delete env.DENORT_BIN; // deno compile would use it for every target
  if (runtime) env.DENORT_BIN = runtime;
  const out = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(arch, `${outDir}/${binaryAsset(arch)}`),
    cwd: ROOT,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.success) return;
  const stderr = new TextDecoder().decode(out.stderr);
  if (!runtime && /Setting up base binary|dl\.deno\.land/.test(stderr)) {
    throw new BuildError(
      `deno compile could not download its runtime denort-${triple}.zip (Deno ${Deno.version.deno}) from dl.deno.land, which this machine cannot reach; unzip it on a machine that can and set DENORT_BIN_${arch.toUpperCase()}=/path/to/denort`,
    );
  }
  await Deno.stderr.write(out.stderr);
  throw new BuildError(`deno compile failed for ${triple} (its output is above)`);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        "out-dir": { type: "string", default: `${ROOT}dist` },
        arch: { type: "string" },
        "release-tag": { type: "string" },
        repo: { type: "string" },
      },
    }));
  } catch (e) {
    throw new BuildError((e as Error).message);
  }
  const outDir = values["out-dir"];
  if (values.arch !== undefined && !(values.arch in TARGETS)) {
    throw new BuildError(`--arch must be amd64 or arm64, not ${values.arch}`);
  }
  if ((values["release-tag"] === undefined) !== (values.repo === undefined)) {
    throw new BuildError("--release-tag and --repo go together");
  }
  const arches = values.arch ? [values.arch as Arch] : (Object.keys(TARGETS) as Arch[]);

  // Start from nothing, so no asset of an earlier build is listed or published by mistake.
  await Deno.mkdir(outDir, { recursive: true });
  for (const name of RELEASE_ASSETS) await Deno.remove(`${outDir}/${name}`).catch(() => {});

  // Every runtime is checked before anything is built, so a bad one leaves no half-built dist.
  const runtimes = new Map<Arch, string | undefined>();
  for (const arch of arches) runtimes.set(arch, await checkedRuntime(arch));
  for (const arch of arches) {
    await compile(arch, runtimes.get(arch), outDir);
    console.log(`built ${outDir}/${binaryAsset(arch)}`);
  }
  await Deno.copyFile(`${ROOT}config/credential-provider-config.yaml`, `${outDir}/${CONFIG_ASSET}`);
  await Deno.copyFile(
    `${ROOT}config/${WORKLOAD_CONFIG_ASSET}`,
    `${outDir}/${WORKLOAD_CONFIG_ASSET}`,
  );
  const read = (names: string[]) =>
    Promise.all(
      names.map(async (name) => ({ name, data: await Deno.readFile(`${outDir}/${name}`) })),
    );
  let cloudInit = await Deno.readTextFile(`${ROOT}cloud-init/cloud-init.sh`);
  if (values["release-tag"] && values.repo) {
    cloudInit = stampCloudInit(cloudInit, values["release-tag"], values.repo);
  }
  const installed = [...arches.map(binaryAsset), CONFIG_ASSET, WORKLOAD_CONFIG_ASSET];
  cloudInit = embedChecksums(cloudInit, sha256sums(await read(installed)));
  await Deno.writeTextFile(`${outDir}/${CLOUD_INIT_ASSET}`, cloudInit, { mode: 0o755 });

  const listed = [...installed, CLOUD_INIT_ASSET];
  await Deno.writeTextFile(`${outDir}/${SUMS_ASSET}`, sha256sums(await read(listed)));
  console.log(`wrote ${outDir}/${SUMS_ASSET} (${listed.join(", ")})`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    // One line, so the reason is the first thing a CI log shows.
    console.error(`build: ${e.message}`);
    Deno.exit(1);
  }
}
