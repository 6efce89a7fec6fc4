/**
 * Issue 16: OKE_CP_TEST_BINARY really swaps what the process-level tests run. A stand-in "binary"
 * (a shell wrapper running `deno run <release permissions> mod.ts`, as `deno compile` bakes them)
 * runs a subset of the contract tests green; the same wrapper with one wrong flag makes them fail.
 * The full set runs against real binaries in the release and CI workflows, and against this
 * wrapper by hand (README, Development).
 *
 * The binary may write only under /var/lib/oke-credential-provider, so the tests keep their
 * caches there: .ci/run and the workflows create it. Elsewhere, without it, this test is skipped.
 */
import assert from "node:assert/strict";
import { DEFAULT_CACHE_DIR } from "../lib/cache.ts";
import { permissionFlags } from "../scripts/build.ts";
import { MOD, TEST_BINARY_VAR } from "./support/plugin_process.ts";

const CONTRACT = new URL("./plugin_test.ts", import.meta.url).pathname;
// Cold then warm (the cache written and read), and a corrupt cache rewritten.
const SUBSET = "/^(iad\\.ocir\\.io: the answer carries|a corrupt cache is ignored)/";

async function cacheRootProblem(): Promise<string | undefined> {
  try {
    await Deno.remove(await Deno.makeTempDir({ dir: DEFAULT_CACHE_DIR, prefix: "probe-" }));
    return undefined;
  } catch (e) {
    return `${DEFAULT_CACHE_DIR} is not writable here (${
      (e as Error).message
    }): create it for this user (sudo install -d -o "$USER" ${DEFAULT_CACHE_DIR})`;
  }
}
const problem = await cacheRootProblem();

/** A stand-in binary: the release flags (plus `extra`), and a line in `log` per start. */
async function wrapper(dir: string, name: string, extra: string[] = []): Promise<string> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const path = `${dir}/${name}`;
  // As if installed where it may run itself (the background refresh): deno is the program.
  const flags = permissionFlags(undefined, Deno.execPath());
  const command = [Deno.execPath(), "run", ...flags, ...extra, "--quiet", MOD]
    .map(quote).join(" ");
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\necho started >> ${quote(`${dir}/${name}.log`)}\nexec ${command} "$@"\n`,
    { mode: 0o755 },
  );
  return path;
}

async function runSubset(binary: string): Promise<{ code: number; text: string }> {
  const env: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "CI"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    // -A: this runs a test file, which starts emulators and plugin processes itself.
    args: ["test", "-A", "--no-check", "--filter", SUBSET, CONTRACT],
    clearEnv: true,
    env: { ...env, [TEST_BINARY_VAR]: binary },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

const starts = async (binary: string) =>
  (await Deno.readTextFile(`${binary}.log`).catch(() => "")).split("\n").filter(Boolean).length;

Deno.test({
  name: `${TEST_BINARY_VAR}: a stand-in binary runs the tests green; one wrong flag fails them`,
  ignore: problem !== undefined && Deno.env.get("CI") !== "true",
  fn: async () => {
    if (problem) assert.fail(problem);
    const dir = await Deno.makeTempDir({ prefix: "okecp-binary-" });
    try {
      const good = await wrapper(dir, "release");
      // Denies the cache path the release flags allow: every cache write fails.
      const wrong = await wrapper(dir, "wrong", [`--deny-write=${DEFAULT_CACHE_DIR}`]);
      const [passed, failed] = await Promise.all([runSubset(good), runSubset(wrong)]);
      assert.equal(passed.code, 0, passed.text);
      assert.match(passed.text, /ok \| 2 passed \| 0 failed/);
      assert.ok(await starts(good) >= 3, "the tests started the stand-in binary");
      assert.notEqual(failed.code, 0, failed.text);
      assert.match(failed.text, /FAILED \| 0 passed \| 2 failed/);
      assert.match(failed.text, /cannot use cache directory \/var\/lib\/oke-credential-provider\//);
      assert.ok(await starts(wrong) >= 2, "the tests started the wrong binary");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
