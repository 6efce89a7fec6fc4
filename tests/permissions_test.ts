/**
 * Issue 5, least privilege: the plugin run with exactly the Deno permissions compiled into the
 * release binaries (scripts/build.ts), not `-A`, with the test's own cache directory as the one
 * writable path. It works on the emulator, cold and warm (HTTPS_PROXY and DENO_CERT work without
 * any permission: the runtime applies them). With a cache directory outside the allowed paths it still answers, and says in one line
 * that it cannot cache there.
 */
import assert from "node:assert/strict";
import { ALLOWED_PATHS, PERMISSION_FLAGS, permissionFlags } from "../scripts/build.ts";
import { startRig } from "./support/emulator.ts";
import { appImage, LOG_LINE } from "./support/fault_scenarios.ts";
import { kubeletRequest, type PluginRun as Run, startPlugin } from "./plugin_process.ts";

Deno.test({
  name: "least privilege: the release binary's permissions suffice, and a forbidden cache is said",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const bench = await startRig();
    const { emu } = bench;
    const allowed = await Deno.makeTempDir({ prefix: "okecp-perm-" });
    // A real, writable place that the binary may not touch.
    const forbidden = await Deno.makeTempDir({ prefix: "okecp-perm-" });
    const run = (cacheDir: string): Promise<Run> =>
      startPlugin({
        stdin: kubeletRequest(appImage(emu)),
        env: emu.env,
        args: ["--cache-dir", cacheDir, "--timeout", "20"],
        permissions: permissionFlags([allowed]),
        killAfterMs: 30_000,
      }).done;
    try {
      assert.deepEqual(ALLOWED_PATHS, ["/var/lib/oke-credential-provider"], "no /tmp");
      assert.deepEqual(permissionFlags(), PERMISSION_FLAGS, "the release set is the default");

      await t.step("cold, then warm, with the cache in the one writable path", async () => {
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
