/**
 * Least privilege (issues 5 and 16): the plugin runs with exactly the Deno permissions compiled
 * into the release binaries (scripts/build.ts), with its cache in a test cache directory. It works
 * on the emulator, cold and warm (HTTPS_PROXY and DENO_CERT work without any permission: the
 * runtime applies them). `status` reads the record (and the node's uptime) and writes metrics only
 * where the binary may write. With a cache directory outside the allowed paths it still answers, and
 * says in one line that it cannot cache there. Each permission of the set is needed: a run
 * without any one of them does not succeed cleanly, so the tests' runs really use this set.
 */
import assert from "node:assert/strict";
import { startRig } from "./support/emulator.ts";
import { appImage, LOG_LINE } from "./support/fault_scenarios.ts";
import {
  cacheRoot,
  kubeletRequest,
  makeCacheDir,
  makeStale,
  pluginCommand,
  type PluginRun as Run,
  settled,
  startPlugin,
  testBinary,
  testPermissions,
} from "./support/plugin_process.ts";
import { ALLOWED_PATHS, PERMISSION_FLAGS, permissionFlags } from "../scripts/build.ts";

Deno.test("the tests start the plugin with the release permissions, or the binary under test", () => {
  const { program, args } = pluginCommand({ args: ["--version"] });
  if (testBinary) {
    assert.deepEqual({ program, args }, { program: testBinary, args: ["--version"] });
    assert.equal(cacheRoot(), "/var/lib/oke-credential-provider");
    return;
  }
  assert.equal(program, Deno.execPath());
  const flags = args.slice(1, args.indexOf("--quiet"));
  assert.deepEqual(flags, permissionFlags([cacheRoot()], Deno.execPath()));
  // Only the fixed cache path is swapped for the test's cache root, and the binary's own path
  // (which it may run, for the background refresh) for deno's.
  const release = permissionFlags();
  assert.deepEqual(flags.filter((f) => release.includes(f)).length, release.length - 3);
  assert.ok(!args.some((a) => /^(-A|--allow-all)$/.test(a)));
});

Deno.test("every test starts the plugin through tests/support/plugin_process.ts", async () => {
  const tests = new URL("./", import.meta.url);
  const plugin = new URL("mod.ts", new URL("..", import.meta.url)).href;
  // The helper itself; the demo, which runs it with the release flags; the test of the
  // OKE_CP_TEST_BINARY switch, whose stand-in binary wraps mod.ts.
  const allowed = ["support/plugin_process.ts", "emulator/demo.ts", "test_binary_test.ts"];
  const offenders: string[] = [];
  const walk = async (dir: URL, prefix: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const name = `${prefix}${entry.name}`;
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, dir), `${name}/`);
      if (!entry.isFile || !name.endsWith(".ts") || allowed.includes(name)) continue;
      const file = new URL(entry.name, dir);
      const source = await Deno.readTextFile(file);
      const paths = [...source.matchAll(/["'`]((?:\.\.?\/)+mod\.ts)["'`]/g)].map((m) => m[1]);
      if (paths.some((p) => new URL(p, file).href === plugin) || /\bMOD\b/.test(source)) {
        offenders.push(name);
      }
    }
  };
  await walk(tests, "");
  assert.deepEqual(offenders, [], "start the plugin with startPlugin/runPlugin");
});

Deno.test({
  name: "least privilege: the release binary's permissions suffice, and a forbidden cache is said",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const bench = await startRig();
    const { emu } = bench;
    const run = (cacheDir: string): Promise<Run> =>
      startPlugin({
        stdin: kubeletRequest(appImage(emu)),
        env: emu.env,
        args: ["--cache-dir", cacheDir, "--timeout", "20"],
        killAfterMs: 30_000,
      }).done;
    const allowed = await makeCacheDir("perm-");
    // A real, writable place outside the test cache root, which the plugin may not touch.
    const forbidden = await Deno.makeTempDir({ prefix: "okecp-perm-" });
    try {
      assert.ok(!`${forbidden}/`.startsWith(`${cacheRoot()}/`));
      assert.deepEqual(ALLOWED_PATHS, ["/var/lib/oke-credential-provider"], "no /tmp");
      assert.deepEqual(permissionFlags(), PERMISSION_FLAGS, "the release set is the default");

      await t.step("cold, then warm, with the cache where the binary may write", async () => {
        const cold = await run(`${allowed}/cache`);
        assert.equal(cold.code, 0, cold.stderr);
        assert.equal(cold.stderr, "");
        const password = cold.response!.auth["iad.ocir.io"].password;
        assert.ok(password);
        assert.equal(emu.counters.federations, 1);
        const mark = emu.requests.length;
        const warm = await run(`${allowed}/cache`);
        assert.equal(warm.code, 0, warm.stderr);
        assert.equal(warm.stderr, "");
        assert.equal(warm.response!.auth["iad.ocir.io"].password, password);
        assert.deepEqual(emu.requests.slice(mark), [], "served from the cache");
      });

      await t.step(
        "a stale token is refreshed by the plugin run detached, same permissions",
        async () => {
          const dir = `${allowed}/cache`;
          const file = `${dir}/docker-iad.ocir.io.json`;
          const entry = await makeStale(dir, "iad.ocir.io");
          const tokens = emu.counters.dockerTokens;
          const stale = await run(dir);
          assert.equal(stale.code, 0, stale.stderr);
          assert.equal(stale.stderr, "");
          assert.equal(stale.response!.auth["iad.ocir.io"].password, entry.token);
          await settled(dir);
          assert.equal(emu.counters.dockerTokens, tokens + 1, "the refresh ran");
          assert.notEqual(JSON.parse(await Deno.readTextFile(file)).token, entry.token);
        },
      );

      await t.step(
        "status reads the record (and the uptime); metrics only where allowed",
        async () => {
          const status = (...args: string[]) =>
            startPlugin({
              stdin: "",
              env: emu.env,
              args: ["status", "--cache-dir", `${allowed}/cache`, ...args],
            }).done;
          const json = await status("--json");
          assert.equal(json.code, 0, json.stderr);
          const [host] = JSON.parse(json.stdout).hosts;
          assert.equal(host.host, "iad.ocir.io");
          assert.ok(host.counts.cold >= 1 && host.counts.cache >= 1, JSON.stringify(host.counts));
          const bootedAt = Date.now() / 1000 - Deno.osUptime();
          assert.ok(Math.abs(host.bootedAt - bootedAt) < 5, "the uptime was readable");
          const prom = await status("--prometheus", `${allowed}/oke.prom`);
          assert.equal(prom.code, 0, prom.stderr);
          assert.match(
            await Deno.readTextFile(`${allowed}/oke.prom`),
            /^# HELP oke_credential_provider_/,
          );
          const refused = await status("--prometheus", `${forbidden}/oke.prom`);
          assert.equal(refused.code, 1);
          assert.match(
            refused.stderr,
            /step=status msg="cannot write .*: outside the paths this binary may write \(give a file in node_exporter's --collector.textfile.directory: \/var\/lib\/node_exporter\/textfile_collector or \/var\/lib\/prometheus\/node-exporter\)"/,
          );
        },
      );

      await t.step(
        "a cache directory outside the allowed paths: answers, and says why not cached",
        async () => {
          const dir = `${forbidden}/cache`;
          for (const attempt of [1, 2]) {
            const federations = emu.counters.federations;
            const result = await run(dir);
            assert.equal(result.code, 0, result.stderr);
            assert.ok(result.response!.auth["iad.ocir.io"].password);
            const lines = result.stderr.trimEnd().split("\n");
            assert.equal(lines.length, 1, result.stderr);
            assert.match(lines[0], LOG_LINE);
            assert.match(
              lines[0],
              new RegExp(
                `^oke-credential-provider level=warn step=cache msg="cannot use cache directory ${dir} \\(it is outside the paths this binary may write \\(/var/lib/oke-credential-provider\\); use the default --cache-dir or mount storage there\\); answering without caching"$`,
              ),
            );
            assert.equal(emu.counters.federations, federations + 1, `nothing cached (${attempt})`);
          }
          assert.deepEqual([...Deno.readDirSync(forbidden)], [], "nothing was written there");
        },
      );
    } finally {
      await emu.close();
      await Deno.remove(allowed, { recursive: true });
      await Deno.remove(forbidden, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "each permission of the release set is needed: without any one, a cold (or stale) run is not clean",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { emu } = await startRig();
    try {
      const full = testPermissions();
      const allows = full.filter((f) => f.startsWith("--allow-"));
      assert.deepEqual(allows.map((f) => f.split("=")[0]), [
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        "--allow-sys",
        "--allow-run",
      ]);
      const start = (dir: string, permissions: string[]) =>
        startPlugin({
          stdin: kubeletRequest(appImage(emu)),
          env: emu.env,
          args: ["--cache-dir", dir, "--timeout", "10"],
          permissions,
          killAfterMs: 20_000,
        }).done;
      for (const dropped of [undefined, ...allows]) {
        await t.step(
          dropped ? `without ${dropped.split("=")[0]}` : "with all of them",
          async () => {
            const dir = await makeCacheDir("drop-");
            try {
              // Running itself is what refreshes a stale token: that run is the one to watch.
              if (dropped?.startsWith("--allow-run")) {
                assert.equal((await start(dir, full)).code, 0);
                await makeStale(dir, "iad.ocir.io");
              }
              const run = await start(dir, full.filter((f) => f !== dropped));
              const clean = run.code === 0 && run.stderr === "" &&
                Boolean(run.response?.auth["iad.ocir.io"]?.password);
              assert.equal(clean, dropped === undefined, run.stderr);
            } finally {
              await Deno.remove(dir, { recursive: true });
            }
          },
        );
      }
    } finally {
      await emu.close();
    }
  },
});
