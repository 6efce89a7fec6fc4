/** The command line itself: --version, --help, bad flags, and a stdin that never ends. */
import assert from "node:assert/strict";
import { VERSION } from "../lib/version.ts";
import { runPlugin } from "./support/plugin_process.ts";

Deno.test("--version and --help print to stdout and exit 0 without reading stdin", async () => {
  const version = await runPlugin({ stdin: "", args: ["--version"] });
  assert.deepEqual([version.code, version.stdout, version.stderr], [
    0,
    `oke-credential-provider ${VERSION}\n`,
    "",
  ]);
  const help = await runPlugin({ stdin: "", args: ["--help"] });
  assert.equal(help.code, 0);
  for (
    const flag of [
      "--cache-dir",
      "--timeout",
      "--log-level",
      "--check-pull",
      "doctor [--image REF]",
      "OCI_METADATA_BASE_URL",
    ]
  ) {
    assert.ok(help.stdout.includes(flag), flag);
  }
});

Deno.test("a bad flag is one line on stderr, nothing on stdout, exit 1", async () => {
  const run = await runPlugin({ stdin: "", args: ["--timeout", "soon"] });
  assert.equal(run.code, 1);
  assert.equal(run.stdout, "");
  assert.equal(
    run.stderr,
    `oke-credential-provider level=error step=arguments msg="--timeout 'soon' is not a number of seconds between 0 and 600"\n`,
  );
});

Deno.test("a stdin that never closes ends at the deadline with one line naming the step", async () => {
  // stdin stays open: only the plugin's own deadline ends this
  const out = await runPlugin({
    stdin: '{"apiVersion":',
    holdStdin: true,
    args: ["--timeout", "1"],
  });
  assert.equal(out.code, 1);
  assert.equal(out.stdout, "");
  assert.match(
    out.stderr,
    /^oke-credential-provider level=error step=request msg="the invocation's deadline ran out during this step \(raise --timeout/,
  );
});
