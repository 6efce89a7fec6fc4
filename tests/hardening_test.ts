/**
 * Issue 11, hardening, on the emulator with the plugin as kubelet runs it: a cache directory or
 * file someone else could plant costs only the cache (the call still answers, with one warning),
 * and no token path opens a connection to a host the plugin does not trust.
 */
import assert from "node:assert/strict";
import type { Emulator } from "./emulator/mod.ts";
import { emulatorDirTest } from "./support/emulator.ts";
import { appImage, LOG_LINE } from "./support/fault_scenarios.ts";
import { kubeletRequest, runPlugin } from "./support/plugin_process.ts";

/** A test with an emulator of its own and a fresh directory to put caches and plants in. */
const test = (name: string, fn: (emu: Emulator, root: string) => Promise<void>) =>
  emulatorDirTest(name, ({ emu }, root) => fn(emu, root));

const provide = (emu: Emulator, cacheDir: string, image = appImage(emu), args: string[] = []) =>
  runPlugin({
    stdin: kubeletRequest(image),
    env: emu.env,
    args: ["--cache-dir", cacheDir, "--timeout", "20", ...args],
  });

const NOBODY = 65534;
const oneLine = (stderr: string) => {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], LOG_LINE);
  return lines[0];
};

test(
  "a cache directory of another user, group-writable, or a symlink: refused, and answered",
  async (emu, root) => {
    const cases: [string, (dir: string) => Promise<void>, string][] = [
      [
        "other",
        (d) => Deno.chown(d, NOBODY, null),
        "is owned by uid 65534, not by this process's uid 0",
      ],
      ["group", (d) => Deno.chmod(d, 0o770), "is writable by other users (mode 0770)"],
      ["link", async (d) => {
        await Deno.mkdir(`${d}.real`, { mode: 0o700 });
        await Deno.remove(d);
        await Deno.symlink(`${d}.real`, d);
      }, "is a symbolic link"],
    ];
    for (const [name, spoil, why] of cases) {
      const dir = `${root}/${name}`;
      await Deno.mkdir(dir, { mode: 0o700 });
      await spoil(dir);
      const federations = emu.counters.federations;
      const run = await provide(emu, dir);
      assert.equal(run.code, 0, run.stderr);
      assert.ok(run.response!.auth["iad.ocir.io"].password, name);
      assert.equal(
        oneLine(run.stderr),
        `oke-credential-provider level=warn step=cache msg="cannot use cache directory ${dir} (${why}: make it a directory of the plugin's user, mode 0700, or point --cache-dir elsewhere); answering without caching"`,
      );
      assert.equal(emu.counters.federations, federations + 1);
      const target = name === "link" ? `${dir}.real` : dir;
      assert.deepEqual([...Deno.readDirSync(target)], [], `${name}: nothing written there`);
    }
  },
);

test(
  "a lock path that is a directory or a dangling symlink: a warning, and the answer",
  async (emu, root) => {
    for (const kind of ["directory", "dangling symlink"]) {
      const dir = `${root}/${kind.replace(" ", "-")}`;
      await Deno.mkdir(dir, { mode: 0o700 });
      if (kind === "directory") await Deno.mkdir(`${dir}/lock`);
      else await Deno.symlink(`${root}/created-through-the-link`, `${dir}/lock`);
      const run = await provide(emu, dir);
      assert.equal(run.code, 0, run.stderr);
      assert.ok(run.response!.auth["iad.ocir.io"].password);
      const what = kind === "directory" ? "not a regular file" : "a symbolic link";
      assert.equal(
        oneLine(run.stderr),
        `oke-credential-provider level=warn step=cache msg="cannot lock ${dir} (${dir}/lock is ${what}); answering without caching"`,
      );
    }
    assert.equal(
      await Deno.lstat(`${root}/created-through-the-link`).catch(() => null),
      null,
      "the link's target was not created",
    );
  },
);

test(
  "a symlink planted at the token path is not followed: the target is neither answered nor written",
  async (emu, root) => {
    const dir = `${root}/cache`;
    const first = await provide(emu, dir);
    assert.equal(first.code, 0, first.stderr);
    // A token file the attacker controls, with a "token" of their choosing, linked in.
    const planted = `${root}/planted.json`;
    const text = (await Deno.readTextFile(`${dir}/docker-iad.ocir.io.json`))
      .replace(/"token":"[^"]+"/, '"token":"planted"');
    await Deno.writeTextFile(planted, text);
    await Deno.remove(`${dir}/docker-iad.ocir.io.json`);
    await Deno.symlink(planted, `${dir}/docker-iad.ocir.io.json`);
    const run = await provide(emu, dir);
    assert.equal(run.code, 0, run.stderr);
    assert.notEqual(run.response!.auth["iad.ocir.io"].password, "planted");
    assert.equal(await Deno.readTextFile(planted), text, "the target is untouched");
    assert.ok((await Deno.lstat(`${dir}/docker-iad.ocir.io.json`)).isFile, "the link was replaced");
  },
);

const UNKNOWN = "ocir.xx-nowhere-1.oci.example.com";
const connectsTo = (emu: Emulator, host: string) =>
  emu.connects.filter((c) => c.startsWith(`${host}:`)).length;

test(
  "doctor --image and --check-pull with a host of an unknown realm open no connection to it",
  async (emu, root) => {
    const image = `${UNKNOWN}/${emu.namespace}/app:1`;
    const doctor = await runPlugin({
      stdin: "",
      env: emu.env,
      args: ["doctor", "--timeout", "10", "--image", image],
    });
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(
      doctor.stdout,
      /✗ OCIR token +OCIR token ocir\.xx-nowhere-1\.oci\.example\.com: .* is in realm domain example\.com, which is neither a known OCI realm nor this node's \(oraclecloud\.com\): no token is sent there/,
    );
    const check = await provide(emu, `${root}/cache`, image, ["--check-pull"]);
    assert.equal(check.code, 1);
    assert.equal(check.stdout, "");
    assert.match(
      check.stderr,
      /step=image host=ocir\.xx-nowhere-1\.oci\.example\.com .*no token is sent there/,
    );
    assert.equal(connectsTo(emu, UNKNOWN), 0, "the emulator saw no connection to the unknown host");
    assert.ok(connectsTo(emu, "auth.us-ashburn-1.oraclecloud.com") > 0, "the rest of the path ran");
  },
);

test(
  "a redirect from IMDS, the auth service or OCIR is refused, never followed",
  async (emu, root) => {
    // Where the redirects point: a loopback server that must never be asked anything.
    let hits = 0;
    const elsewhere = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      hits++;
      return new Response("{}");
    });
    const to = `http://127.0.0.1:${elsewhere.addr.port}/stolen`;
    try {
      const cases: [string, string, RegExp][] = [
        ["imds:identity/cert.pem", "IMDS", /step=IMDS host=127\.0\.0\.1:\d+ /],
        ["auth", "federation", /step=federation host=auth\.us-ashburn-1\.oraclecloud\.com /],
        ["ocir", "OCIR token", /step=OCIR-token host=iad\.ocir\.io /],
      ];
      for (const [endpoint, step, where] of cases) {
        emu.clearFaults();
        emu.fault(endpoint, { redirect: to });
        const run = await provide(emu, `${root}/${endpoint.replace(/\W/g, "-")}`);
        assert.equal(run.code, 1, `${step}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        const line = oneLine(run.stderr);
        assert.match(line, where);
        assert.match(line, /the answer was a redirect, which is never followed/);
      }
      assert.equal(hits, 0, "nothing was sent where the redirects pointed");
    } finally {
      await elsewhere.shutdown();
    }
  },
);

test("stdin open and silent: exit 1 within the deadline, one line naming the step", async (emu) => {
  const started = Date.now();
  const run = await runPlugin({
    stdin: "",
    holdStdin: true,
    env: emu.env,
    args: ["--timeout", "2"],
    killAfterMs: 15_000,
  });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(run.signal, null, "the plugin ended by itself, not by the safety net");
  assert.equal(run.code, 1);
  assert.equal(run.stdout, "");
  assert.equal(
    oneLine(run.stderr),
    `oke-credential-provider level=error step=request msg="the invocation's deadline ran out during this step (raise --timeout (kubelet allows 60 s) or find what is slow on this node's network)"`,
  );
  assert.ok(seconds < 10, `${seconds} s`);
});
