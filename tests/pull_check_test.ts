/** The pull check (lib/pull_check.ts): challenge parsing, and `doctor --image` and `--check-pull` on the emulator. */
import assert from "node:assert/strict";
import { parseChallenge } from "../lib/pull_check.ts";
import type { Emulator } from "./emulator/mod.ts";
import { kubeletRequest, makeCacheDir, runPlugin } from "./support/plugin_process.ts";
import { emulatorTest } from "./support/emulator.ts";

Deno.test("parseChallenge reads a registry's Bearer challenge, any case, any order", () => {
  assert.deepEqual(
    parseChallenge(
      'Bearer realm="https://iad.ocir.io/20180419/docker/token",service="iad.ocir.io",scope="repository:ns/app:pull"',
    ),
    {
      realm: "https://iad.ocir.io/20180419/docker/token",
      service: "iad.ocir.io",
      scope: "repository:ns/app:pull",
    },
  );
  assert.deepEqual(parseChallenge('bearer Service="s", Realm="https://r/t"'), {
    service: "s",
    realm: "https://r/t",
  });
  assert.equal(parseChallenge('Basic realm="x"'), undefined);
  assert.equal(parseChallenge(null), undefined);
  assert.deepEqual(parseChallenge("Bearer"), undefined);
  assert.deepEqual(parseChallenge("Bearer "), {});
});

/** `doctor --image` on the emulator: its exit status and its manifest line with the fix. */
async function doctorImage(emu: Emulator, image: string) {
  const run = await runPlugin({ stdin: "", env: emu.env, args: ["doctor", "--image", image] });
  assert.equal(run.stderr, "", "doctor reports on stdout only");
  // The recorded calls come first (status_emulator_test.ts checks them): the live checks follow.
  const all = run.stdout.split("\n");
  const lines = all.slice(all.indexOf("what happens now (every step, run on this node):") + 1);
  const at = lines.findIndex((l) => l.slice(2).startsWith("manifest"));
  return { code: run.code, manifest: lines.slice(at, at + 2).join("\n"), stdout: lines.join("\n") };
}

/** A `--check-pull` run on an empty cache, and how long its token stays cached. */
async function checkPullRun(emu: Emulator, image: string) {
  const cacheDir = await makeCacheDir("pull-check-");
  try {
    const run = await runPlugin({
      stdin: kubeletRequest(image),
      env: emu.env,
      args: ["--cache-dir", cacheDir, "--check-pull"],
    });
    assert.equal(run.code, 0, run.stderr);
    const entry = JSON.parse(await Deno.readTextFile(`${cacheDir}/docker-iad.ocir.io.json`));
    return { ...run, refreshIn: entry.refreshAt - Date.now() / 1000 };
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
}

// The emulator has no registry behind /v2/: with a token that may pull, a manifest is "readable
// but not found" (404); with one that may not, the registry answers 401 insufficient_scope.
emulatorTest(
  "doctor --image and --check-pull on the emulator: readable, then denied by a policy",
  async (t, { emu }) => {
    const image = `iad.ocir.io/${emu.namespace}/app:1`;
    await t.step("doctor --image passes every check, the manifest one included", async () => {
      const report = await doctorImage(emu, image);
      assert.equal(report.code, 0, report.stdout);
      assert.match(report.stdout, /^✓ image +iad\.ocir\.io\//);
      assert.match(
        report.manifest,
        new RegExp(`^✓ manifest +${emu.namespace}/app:1 is readable but not found \\(HTTP 404`),
      );
    });
    await t.step(
      "--check-pull caches the token until its usual refresh point, silently",
      async () => {
        const checked = await checkPullRun(emu, image);
        assert.equal(checked.stderr, "");
        assert.match(checked.response!.cacheDuration, /^(1[789]|2[012])m\d+s$/);
        assert.ok(checked.refreshIn > 1000);
        assert.ok(emu.requests.some((r) => r.method === "HEAD" && r.path.includes("/manifests/1")));
      },
    );
    emu.setPolicy(() => false);
    await t.step("doctor --image fails the manifest check and names the policy", async () => {
      const report = await doctorImage(emu, image);
      assert.equal(report.code, 1);
      assert.match(report.manifest, /^✗ manifest .*HTTP 401 with the docker token/);
      assert.match(
        report.manifest,
        new RegExp(`fix: .*${emu.instance.compartment.replaceAll(".", "\\.")}.*read repos`),
      );
    });
    await t.step("--check-pull caches the token 2 minutes only, and says why", async () => {
      const checked = await checkPullRun(emu, image);
      assert.match(checked.response!.cacheDuration, /^(1m5\d|2m0)s$/);
      assert.ok(checked.refreshIn <= 120, `refresh in ${checked.refreshIn} s`);
      assert.match(
        checked.stderr,
        /level=warn step=manifest-check host=iad\.ocir\.io msg="this token cannot read .*app .*it is cached for 120 s only"/,
      );
    });
  },
);
