/**
 * scripts/build.ts: the offline failure, the DENORT_BIN checks, a whole build on stand-in runtimes,
 * and that the baked-in permissions cover what the plugin reads.
 *
 * `deno compile` only appends our program to the runtime it is given, so a hand-made minimal
 * ELF file stands in for denort: the build then runs end to end here, without the network.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import {
  ALLOWED_ENV,
  ALLOWED_PATHS,
  binaryAsset,
  BuildError,
  compileArgs,
  INSTALL_PATH,
  METRICS_PATHS,
  permissionFlags,
  READ_ONLY_PATHS,
  RELEASE_ASSETS,
  runtimeFor,
  runtimeProblem,
  sha256sums,
  stampCloudInit,
  TARGETS,
} from "../scripts/build.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUILD = `${ROOT}scripts/build.ts`;

/** A minimal valid 64-bit little-endian ELF executable header for `machine`, with one segment. */
function standInRuntime(machine: number): Uint8Array {
  const b = new Uint8Array(120);
  const v = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // magic, 64-bit, little-endian, version 1
  v.setUint16(16, 2, true); // executable
  v.setUint16(18, machine, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, 0x400078n, true); // entry
  v.setBigUint64(32, 64n, true); // program headers right after this header
  v.setUint16(52, 64, true); // header size
  v.setUint16(54, 56, true); // program header size
  v.setUint16(56, 1, true); // one program header
  v.setUint16(58, 64, true); // section header size
  v.setUint32(64, 1, true); // PT_LOAD
  v.setUint32(68, 5, true); // read + execute
  v.setBigUint64(80, 0x400000n, true);
  v.setBigUint64(88, 0x400000n, true);
  v.setBigUint64(96, 120n, true);
  v.setBigUint64(104, 120n, true);
  v.setBigUint64(112, 0x1000n, true);
  return b;
}

interface BuildRun {
  code: number;
  stderr: string;
  outDir: string;
  dir: string;
}

/**
 * Runs the build as `deno task build` does, cut off from the internet: a proxy on a closed port
 * and a fresh DENO_DIR (sharing only the npm and module caches), so no denort downloaded
 * earlier can make the build succeed.
 */
async function runBuild(env: Record<string, string>, args: string[] = []): Promise<BuildRun> {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  const outDir = `${dir}/dist`;
  const info = JSON.parse(new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
      .output())
      .stdout,
  ));
  await Deno.mkdir(`${dir}/deno-dir`);
  for (const [name, target] of [["npm", info.npmCache], ["remote", info.modulesCache]]) {
    await Deno.mkdir(target, { recursive: true });
    await Deno.symlink(target, `${dir}/deno-dir/${name}`);
  }
  const inherited = Deno.env.toObject();
  for (const name of Object.keys(inherited)) {
    if (/^DENORT_BIN|_proxy$/i.test(name)) delete inherited[name];
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BUILD, "--out-dir", outDir, ...args],
    cwd: ROOT,
    clearEnv: true,
    env: {
      ...inherited,
      DENO_DIR: `${dir}/deno-dir`,
      HTTPS_PROXY: "http://127.0.0.1:9",
      HTTP_PROXY: "http://127.0.0.1:9",
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), outDir, dir };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Writes stand-in runtimes for both architectures; returns their paths. */
async function standIns(dir: string): Promise<{ amd64: string; arm64: string }> {
  const paths = { amd64: `${dir}/denort-amd64`, arm64: `${dir}/denort-arm64` };
  await Deno.writeFile(paths.amd64, standInRuntime(TARGETS.amd64.elfMachine), { mode: 0o755 });
  await Deno.writeFile(paths.arm64, standInRuntime(TARGETS.arm64.elfMachine), { mode: 0o755 });
  return paths;
}

Deno.test("build: offline, it stops with one clear line and a non-zero exit", async () => {
  const run = await runBuild({});
  try {
    assert.notEqual(run.code, 0);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0],
      /^build: deno compile could not download its runtime denort-x86_64-unknown-linux-gnu\.zip .*set DENORT_BIN_AMD64=/,
    );
    assert.deepEqual(await listDir(run.outDir), [], "no asset is left behind");
  } finally {
    await Deno.remove(run.dir, { recursive: true });
  }
});

Deno.test("build: DENORT_BIN pointing at the deno CLI is refused", async () => {
  const run = await runBuild({ DENORT_BIN: Deno.execPath() });
  try {
    assert.notEqual(run.code, 0);
    assert.match(run.stderr.trim(), /^build: DENORT_BIN: .* is the full deno CLI, not denort/);
    assert.equal(run.stderr.trim().split("\n").length, 1);
    assert.deepEqual(await listDir(run.outDir), []);
  } finally {
    await Deno.remove(run.dir, { recursive: true });
  }
});

Deno.test("build: one DENORT_BIN for both targets is refused before anything is built", async () => {
  const dir = await Deno.makeTempDir();
  const { amd64 } = await standIns(dir);
  const run = await runBuild({ DENORT_BIN: amd64 });
  try {
    assert.notEqual(run.code, 0);
    assert.match(run.stderr.trim(), /^build: DENORT_BIN: .* is built for amd64, not arm64/);
    assert.deepEqual(await listDir(run.outDir), [], "not even the amd64 binary");
  } finally {
    await Deno.remove(run.dir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: with runtimes on disk it makes every release asset, pinned and summed", async () => {
  const dir = await Deno.makeTempDir();
  const runtimes = await standIns(dir);
  const run = await runBuild(
    { DENORT_BIN_AMD64: runtimes.amd64, DENORT_BIN_ARM64: runtimes.arm64 },
    ["--release-tag", "v1.2.3", "--repo", "acme/oke-credential-provider"],
  );
  try {
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await listDir(run.outDir), [...RELEASE_ASSETS].sort());
    // The real sha256sum agrees with SHA256SUMS, which lists everything but itself.
    const check = await new Deno.Command("sha256sum", {
      args: ["--check", "--strict", "SHA256SUMS"],
      cwd: run.outDir,
      stdout: "piped",
    }).output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
    const listed = (await Deno.readTextFile(`${run.outDir}/SHA256SUMS`)).trim().split("\n")
      .map((l) => l.split("  ")[1]);
    assert.deepEqual(listed.sort(), RELEASE_ASSETS.filter((a) => a !== "SHA256SUMS").sort());

    for (const arch of ["amd64", "arm64"] as const) {
      const binary = await Deno.readFile(`${run.outDir}/${binaryAsset(arch)}`);
      assert.equal(new DataView(binary.buffer).getUint16(18, true), TARGETS[arch].elfMachine);
      assert.equal((await Deno.stat(`${run.outDir}/${binaryAsset(arch)}`)).mode! & 0o111, 0o111);
      // The permissions Deno 2.9 writes into the binary's metadata are the ones we chose.
      const text = new TextDecoder("latin1").decode(binary);
      const baked = JSON.parse(/"permissions":(\{[^{}]*\})/.exec(text)![1]);
      assert.deepEqual(baked.allow_env, [...ALLOWED_ENV]);
      assert.deepEqual(baked.allow_read, [...ALLOWED_PATHS, ...READ_ONLY_PATHS]);
      assert.deepEqual(baked.allow_write, [...ALLOWED_PATHS, ...METRICS_PATHS]);
      assert.deepEqual(baked.allow_net, [], "all hosts");
      // The uid, to check the cache's owner; the uptime, for status's counts since boot.
      assert.deepEqual(baked.allow_sys, ["uid", "osUptime"]);
      assert.deepEqual(baked.allow_run, [INSTALL_PATH], "only itself, for the background refresh");
      assert.equal(baked.allow_ffi, null);
      assert.deepEqual(baked.deny_import, [], "no remote import");
      assert.equal(baked.prompt, false);
    }
    assert.equal(
      await Deno.readTextFile(`${run.outDir}/credential-provider-config.yaml`),
      await Deno.readTextFile(`${ROOT}config/credential-provider-config.yaml`),
    );
    const cloudInit = await Deno.readTextFile(`${run.outDir}/cloud-init.sh`);
    assert.match(cloudInit, /^OKE_CP_VERSION="\$\{OKE_CP_VERSION:-v1\.2\.3\}"$/m);
    assert.match(cloudInit, /^OKE_CP_REPO="\$\{OKE_CP_REPO:-acme\/oke-credential-provider\}"$/m);
    // The node checks its downloads against checksums fixed in the script at release time.
    assert.match(cloudInit, /^RELEASE_TAG="v1\.2\.3"$/m);
    const embedded = /^RELEASE_SHA256SUMS="([^"]*)"$/m.exec(cloudInit)![1];
    const sums = await Deno.readTextFile(`${run.outDir}/SHA256SUMS`);
    const installed = sums.split("\n").filter((l) => l && !l.endsWith("  cloud-init.sh"));
    assert.deepEqual(embedded.split("\n").sort(), installed.sort());
    // The README's way to verify a release by hand works on what the build made.
    const readme = await Deno.readTextFile(`${ROOT}README.md`);
    const verify = /### Verify a release by hand[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)![1];
    const byHand = await new Deno.Command("bash", {
      args: ["-c", `set -euo pipefail\n${verify.replace(/^ {3}/gm, "")}`],
      cwd: run.outDir,
      stdout: "piped",
    }).output();
    assert.equal(byHand.code, 0);
    assert.equal(new TextDecoder().decode(byHand.stdout).match(/: OK$/gm)?.length, 4); // two binaries, two configs
  } finally {
    await Deno.remove(run.dir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: bad flags fail in one line", async () => {
  for (
    const [args, why] of [
      [["--arch", "riscv64"], /--arch must be amd64 or arm64/],
      [["--release-tag", "v1.0.0"], /--release-tag and --repo go together/],
      [["--release-tag", "1.0", "--repo", "a/b"], /is not like v1\.2\.3/],
      [["--bogus"], /bogus/],
    ] as const
  ) {
    const dir = await Deno.makeTempDir();
    const { amd64, arm64 } = await standIns(dir);
    const run = await runBuild({ DENORT_BIN_AMD64: amd64, DENORT_BIN_ARM64: arm64 }, [...args]);
    await Deno.remove(run.dir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
    assert.notEqual(run.code, 0, args.join(" "));
    assert.match(run.stderr.trim(), new RegExp(`^build: .*${why.source}`));
  }
});

Deno.test("runtime check: missing file, not ELF, wrong CPU, deno CLI; a proper ELF passes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { amd64, arm64 } = await standIns(dir);
    await Deno.writeTextFile(`${dir}/script`, "#!/bin/sh\n");
    assert.match((await runtimeProblem(`${dir}/nope`, "amd64"))!, /cannot read/);
    assert.match(
      (await runtimeProblem(`${dir}/script`, "amd64"))!,
      /not a 64-bit Linux executable/,
    );
    assert.match((await runtimeProblem(arm64, "amd64"))!, /built for arm64, not amd64/);
    assert.match((await runtimeProblem(amd64, "arm64"))!, /built for amd64, not arm64/);
    const hostArch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
    assert.match((await runtimeProblem(Deno.execPath(), hostArch))!, /full deno CLI/);
    assert.equal(await runtimeProblem(amd64, "amd64"), undefined);
    assert.equal(await runtimeProblem(arm64, "arm64"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runtime choice: the per-architecture variable wins over DENORT_BIN", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.deepEqual(runtimeFor("arm64", env({ DENORT_BIN: "/a", DENORT_BIN_ARM64: "/b" })), {
    variable: "DENORT_BIN_ARM64",
    path: "/b",
  });
  assert.deepEqual(runtimeFor("amd64", env({ DENORT_BIN: "/a", DENORT_BIN_ARM64: "/b" })), {
    variable: "DENORT_BIN",
    path: "/a",
  });
  assert.equal(runtimeFor("amd64", env({})), undefined);
});

Deno.test("stampCloudInit pins version and repository, and refuses what it cannot pin", () => {
  const script = Deno.readTextFileSync(`${ROOT}cloud-init/cloud-init.sh`);
  const stamped = stampCloudInit(script, "v2.0.0", "acme/oke-credential-provider");
  const changed = stamped.split("\n").filter((line, i) => line !== script.split("\n")[i]);
  assert.deepEqual(changed, [
    'OKE_CP_VERSION="${OKE_CP_VERSION:-v2.0.0}"',
    'OKE_CP_REPO="${OKE_CP_REPO:-acme/oke-credential-provider}"',
  ]);
  assert.throws(() => stampCloudInit(script, "v1; rm -rf /", "a/b"), BuildError);
  assert.throws(() => stampCloudInit(script, "v1.0.0", "a/b c"), BuildError);
  assert.throws(() => stampCloudInit("#!/bin/bash\n", "v1.0.0", "a/b"), BuildError);
});

Deno.test("SHA256SUMS is in sha256sum's format", () => {
  const abc = new TextEncoder().encode("abc");
  assert.equal(
    sha256sums([{ name: "f", data: abc }]),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  f\n",
  );
});

Deno.test("permissions: narrow flags, both targets, the release names", () => {
  const args = compileArgs("arm64", "out/x");
  assert.deepEqual(args.slice(0, 3), ["compile", "--target", "aarch64-unknown-linux-gnu"]);
  assert.equal(compileArgs("amd64", "x")[2], "x86_64-unknown-linux-gnu");
  assert.equal(args.at(-1), "mod.ts");
  for (const flag of permissionFlags()) assert.ok(args.includes(flag));
  for (const arg of args) {
    assert.ok(!/^(-A|--allow-all|--allow-ffi|--allow-import)/.test(arg), arg);
    assert.ok(!/^--allow-sys(?!=uid,osUptime$)/.test(arg), `${arg}: the uid and uptime only`);
    assert.ok(!/^--allow-run(?!=)/.test(arg) && !arg.includes("/tmp"), arg);
    if (arg.startsWith("--allow-run")) assert.equal(arg, `--allow-run=${INSTALL_PATH}`);
    assert.ok(!/^--allow-(read|write)=.*\/tmp/.test(arg), `${arg}: no /tmp`);
    assert.ok(!/^--allow-(read|write)$/.test(arg), `${arg} needs a path list`);
    assert.ok(!/^--allow-env$/.test(arg), "--allow-env needs a variable list");
  }
  assert.ok(args.includes("--no-prompt"));
  assert.equal(binaryAsset("amd64"), "oke-credential-provider-linux-amd64");
  assert.deepEqual([...RELEASE_ASSETS], [
    "oke-credential-provider-linux-amd64",
    "oke-credential-provider-linux-arm64",
    "credential-provider-config.yaml",
    "credential-provider-config-workload.yaml",
    "cloud-init.sh",
    "SHA256SUMS",
  ]);
});

/** Environment variable names read by the plugin's source, as far as a scan can tell. */
async function envNamesRead(): Promise<{ names: Set<string>; unscannable: string[] }> {
  const files = [`${ROOT}mod.ts`];
  for await (const e of Deno.readDir(`${ROOT}lib`)) {
    if (e.isFile && e.name.endsWith(".ts")) files.push(`${ROOT}lib/${e.name}`);
  }
  const names = new Set<string>();
  const unscannable: string[] = [];
  for (const file of files) {
    // Code only: doc comments show examples such as `Deno.env.get(name)`.
    const source = (await Deno.readTextFile(file)).replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    // `Deno.env.get("X")`, and the `env("X")` accessor lib/options.ts passes around.
    for (
      const m of source.matchAll(/\b(?:Deno\.env\.get|env)\(\s*["'`]([A-Za-z_][A-Za-z0-9_]*)["'`]/g)
    ) {
      names.add(m[1]);
    }
    for (const m of source.matchAll(/process\.env(?:\.(\w+)|\[["'](\w+)["']\])/g)) {
      names.add(m[1] ?? m[2]);
    }
    // Reads this scan cannot name would slip past the check, so they must use a literal name.
    // Allowed: a plain forwarder `(name) => Deno.env.get(name)`, whose callers the scan sees.
    const rest = source.replace(/\((\w+)(?::\s*string)?\)\s*=>\s*Deno\.env\.get\(\1\)/g, "");
    for (const m of rest.matchAll(/Deno\.env\.(?:toObject\(|get\(\s*[^"'`\s])/g)) {
      unscannable.push(`${file}: ${m[0]}`);
    }
    if (/process\.env(?![.[])/.test(source)) unscannable.push(`${file}: process.env`);
  }
  return { names, unscannable };
}

Deno.test("permissions: --allow-env covers every variable lib/ and mod.ts read", async () => {
  const { names, unscannable } = await envNamesRead();
  assert.ok(names.size > 0, "the scan found the plugin's variables");
  const missing = [...names].filter((n) => !(ALLOWED_ENV as readonly string[]).includes(n));
  assert.deepEqual(missing, [], "add these to ALLOWED_ENV in scripts/build.ts");
  assert.deepEqual(unscannable, [], "read environment variables by literal name");
});

interface Job {
  needs?: string | string[];
  "runs-on": string;
  strategy?: { matrix: { include: Record<string, string>[] } };
  env?: Record<string, string>;
  permissions?: Record<string, string>;
  steps: { name?: string; uses?: string; run?: string; with?: Record<string, string> }[];
}
const workflow = async (name: string): Promise<{ jobs: Record<string, Job> }> =>
  parse(await Deno.readTextFile(`${ROOT}.github/workflows/${name}`));

Deno.test("release: both binaries tested on their own CPU, then exactly the README's assets published", async () => {
  const { jobs } = await workflow("release.yml");
  assert.ok(jobs.build.steps.some((s) => s.run?.includes("deno task build")));
  // The tests run against each binary, on a runner of its architecture.
  const matrix = jobs.test.strategy!.matrix.include;
  assert.deepEqual(matrix.map((m) => [m.arch, m.runner]), [
    ["amd64", "ubuntu-24.04"],
    ["arm64", "ubuntu-24.04-arm"],
  ]);
  assert.equal(
    jobs.test.env!.BINARY,
    "${{ github.workspace }}/dist/" + binaryAsset("amd64").replace("amd64", "${{ matrix.arch }}"),
  );
  // Tested where a node has it: the one program it may run, for the background refresh.
  assert.ok(jobs.test.steps.some((s) => s.run?.includes(`"$BINARY" ${INSTALL_PATH}`)));
  assert.ok(
    jobs.test.steps.some((s) => s.run === `OKE_CP_TEST_BINARY=${INSTALL_PATH} bash .ci/run`),
  );
  // Publishing waits for both, and is the only job that may write to the repository.
  assert.deepEqual(jobs.publish.needs, ["build", "test"]);
  for (const [name, job] of Object.entries(jobs)) {
    assert.equal(job.permissions?.contents === "write", name === "publish", name);
  }
  const publish = jobs.publish.steps.find((s) => s.name === "Publish")!.run!;
  const published = [...publish.matchAll(/dist\/(\S+)/g)].map((m) => m[1]);
  assert.deepEqual(published, [...RELEASE_ASSETS]);
  const attest = jobs.build.steps.find((s) =>
    s.uses?.startsWith("actions/attest-build-provenance")
  );
  assert.deepEqual(attest!.with!["subject-path"].trim().split("\n").map((p) => p.slice(5)), [
    ...RELEASE_ASSETS,
  ]);
  const notes = await Deno.readTextFile(`${ROOT}README.md`);
  for (const asset of RELEASE_ASSETS) assert.ok(notes.includes(`\`${asset}\``), asset);
  assert.match(notes, /gh attestation verify oke-credential-provider-linux-amd64 --repo /);
});

Deno.test("ci: every push and pull request runs .ci/run, and again against the amd64 binary", async () => {
  const ci = parse(await Deno.readTextFile(`${ROOT}.github/workflows/ci.yml`));
  assert.deepEqual(Object.keys(ci.on).sort(), ["pull_request", "push"]);
  const { jobs } = await workflow("ci.yml");
  assert.ok(jobs.check.steps.some((s) => s.run === "bash .ci/run"));
  assert.ok(jobs.binary.steps.some((s) => s.run === "deno task build --arch amd64"));
  assert.ok(
    jobs.binary.steps.some((s) =>
      s.run?.includes(`"$PWD/dist/${binaryAsset("amd64")}" ${INSTALL_PATH}`)
    ),
  );
  assert.ok(
    jobs.binary.steps.some((s) => s.run === `OKE_CP_TEST_BINARY=${INSTALL_PATH} bash .ci/run`),
  );
});

Deno.test("start-up: lib/ and mod.ts import only relative modules and node: built-ins", async () => {
  // Deno sets up npm resolution at start for any npm package the module graph reaches, dynamic
  // imports included: ~1.5 ms on every warm call (measured for jose, issue 14).
  const offenders: string[] = [];
  const files = ["mod.ts", ...[...Deno.readDirSync(`${ROOT}lib`)].map((e) => `lib/${e.name}`)];
  for (const file of files.filter((f) => f.endsWith(".ts"))) {
    const source = await Deno.readTextFile(`${ROOT}${file}`);
    for (const [, specifier] of source.matchAll(/(?:from|import\()\s*"([^"]+)"/g)) {
      if (!/^(\.{1,2}\/|node:)/.test(specifier)) offenders.push(`${file}: ${specifier}`);
    }
  }
  assert.deepEqual(offenders, []);
});
