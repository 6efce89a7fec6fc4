/**
 * Issue 5, concurrency: kubelet starts the plugin many times at once on one node (once per image,
 * not per registry). 32 at once all succeed with one federation and no torn cache file, even
 * while IMDS rate-limits; a process SIGKILLed while it holds the cache lock, or at any moment of
 * its cold path, leaves no deadlock and no corrupt file behind.
 */
import assert from "node:assert/strict";
import { readDockerToken, readSession } from "../lib/cache.ts";
import { readRefreshRecord } from "../lib/refresh_record.ts";
import { readStatus } from "../lib/status_record.ts";
import { emulatorTest, type Rig, waitForRequest } from "./support/emulator.ts";
import { LOG_LINE } from "./support/fault_scenarios.ts";
import {
  kubeletRequest,
  makeCacheDir,
  type PluginRun as Run,
  settled,
  startPlugin,
} from "./support/plugin_process.ts";

/** Starts the plugin for `image` on the rig's emulator with this cache directory. */
const plugin = (rig: Rig, dir: string, image: string, timeout = 40) =>
  startPlugin({
    stdin: kubeletRequest(image),
    env: rig.emu.env,
    args: ["--cache-dir", dir, "--timeout", String(timeout)],
    killAfterMs: (timeout + 10) * 1000,
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Asserts that every cache file is whole: each token file parses and holds a usable entry (a
 * reader would use it), and nothing else is there but files no reader opens. Returns the names.
 */
async function assertCacheSound(dir: string, context: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const name = entry.name;
    names.push(name);
    // The lock, refresh claims, writers' temp files and the writability probe are never read
    // as a cache, nor are the status record's journal and temp file (lib/status.ts).
    if (
      name === "lock" || name.endsWith(".claim") || name.endsWith(".tmp") ||
      name.startsWith(".probe-") || /^status-.+\.(hits|part)$/.test(name)
    ) continue;
    const text = await Deno.readTextFile(`${dir}/${name}`).catch(() => undefined);
    if (text === undefined) continue; // replaced or dropped meanwhile: absent is fine
    assert.doesNotThrow(() => JSON.parse(text), `${name} is torn: ${context}`);
    const record = /^refresh-(.+)\.json$/.exec(name)?.[1];
    if (name === "session.json") {
      assert.ok(await readSession(dir), `${name} is unusable: ${context}`);
    } else if (name === "session-key.spare.json") {
      assert.ok(JSON.parse(text).privateKey, `${name} has no key: ${context}`);
    } else if (record) {
      assert.ok(await readRefreshRecord(dir, record), `${name} is unusable: ${context}`);
    } else if (!name.startsWith("status-")) {
      const host = /^docker-(.+)\.json$/.exec(name)?.[1];
      assert.ok(host, `unexpected file ${name}: ${context}`);
      assert.ok(await readDockerToken(dir, host), `${name} is unusable: ${context}`);
    }
  }
  // The status record is checked on its own (status_test.ts); here only the cache's files.
  return names.filter((name) => !name.startsWith("status-")).sort();
}

/** Reads the cache over and over until stopped, asserting each time that it is sound. */
function watchCache(dir: string) {
  let stop = false;
  let rounds = 0;
  const done = (async () => {
    while (!stop) {
      await assertCacheSound(dir, `read while the processes ran (round ${rounds})`);
      rounds++;
      await sleep(5);
    }
    return rounds;
  })();
  done.catch(() => {}); // a failure is reported by stop()
  return {
    stop: () => {
      stop = true;
      return done;
    },
  };
}

/** Asserts a run answered credentials for `host` without a word on stderr; returns them. */
function password(run: Run, host: string): string {
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "", "a successful run is silent at the default level");
  assert.deepEqual(Object.keys(run.response!.auth), [host]);
  return run.response!.auth[host].password;
}

emulatorTest(
  "concurrency: storms, and processes killed in the lock or mid-write",
  async (t, rig) => {
    const { emu } = rig;
    const ns = emu.namespace;
    /** A step on an empty cache directory; `federations` is how many it must cause. */
    const step = (
      name: string,
      federations: number | undefined,
      fn: (dir: string) => Promise<void>,
    ) =>
      t.step(name, async () => {
        const dir = await makeCacheDir("storm-");
        const before = emu.counters.federations;
        emu.clearFaults();
        try {
          await fn(dir);
        } finally {
          emu.clearFaults();
          rig.hooks.clear();
          await settled(dir).catch(() => {});
          await Deno.remove(dir, { recursive: true });
        }
        if (federations !== undefined) {
          assert.equal(emu.counters.federations - before, federations, "federations");
        }
      });

    await step(
      "32 invocations for one image on an empty cache: one federation",
      1,
      async (dir) => {
        const mark = emu.requests.length;
        const watcher = watchCache(dir);
        const runs = await Promise.all(
          Array.from({ length: 32 }, () => plugin(rig, dir, `iad.ocir.io/${ns}/app:1`).done),
        );
        assert.ok(await watcher.stop() > 0, "the cache was read while the processes ran");
        assert.equal(new Set(runs.map((run) => password(run, "iad.ocir.io"))).size, 1);
        const requests = emu.requests.slice(mark);
        assert.equal(requests.filter((r) => r.service === "imds").length, 4, "IMDS asked once");
        assert.equal(requests.filter((r) => r.service === "ocir").length, 1);
        await settled(dir);
        assert.deepEqual(await assertCacheSound(dir, "after"), [
          "docker-iad.ocir.io.json",
          "lock",
          "session-key.spare.json",
          "session.json",
        ]);
        // Every one of the 32 is on record (cold: it waited for the lock, or from the cache).
        const [record] = await readStatus(dir);
        assert.equal(record.counts.cold + record.counts.cache, 32);
        assert.ok(record.counts.cold >= 1);
      },
    );

    await step("32 invocations of a mix of images while IMDS rate-limits", 1, async (dir) => {
      const hosts = [
        "iad.ocir.io",
        "us-ashburn-1.ocir.io",
        "ocir.us-ashburn-1.oci.oraclecloud.com",
        "fra.ocir.io", // cross-region
      ];
      const images = Array.from(
        { length: 32 },
        (_, i) =>
          i % 8 === 6
            ? `docker.io/library/nginx:1.${i}`
            : i % 8 === 7
            ? `ghcr.io/org/tool${i}:latest`
            : `${hosts[i % hosts.length]}/${ns}/app${i}:${i}`,
      );
      // The first of them meets IMDS's rate limit, as the existing plugin's users did.
      emu.fault("imds", { status: [429, 429, 429, 429], retryAfter: 1 });
      const dockerTokens = emu.counters.dockerTokens;
      const watcher = watchCache(dir);
      const runs = await Promise.all(images.map((image) => plugin(rig, dir, image).done));
      assert.ok(await watcher.stop() > 0);
      const byHost = new Map<string, Set<string>>();
      runs.forEach((run, i) => {
        const host = images[i].split("/")[0];
        if (!hosts.includes(host)) {
          assert.equal(run.code, 0, run.stderr);
          assert.deepEqual(run.response!.auth, {});
          assert.match(run.stderr, /^oke-credential-provider level=warn step=image .*\n$/);
          return;
        }
        byHost.set(host, (byHost.get(host) ?? new Set()).add(password(run, host)));
      });
      assert.deepEqual([...byHost.keys()].sort(), [...hosts].sort());
      for (const [host, passwords] of byHost) assert.equal(passwords.size, 1, host);
      assert.equal(emu.counters.dockerTokens - dockerTokens, hosts.length, "one per host");
      await settled(dir);
      assert.deepEqual(
        await assertCacheSound(dir, "after"),
        [
          ...hosts.map((h) => `docker-${h}.json`),
          "lock",
          "session-key.spare.json",
          "session.json",
        ].sort(),
      );
    });

    await step("a holder of the lock killed with SIGKILL: no deadlock", 1, async (dir) => {
      emu.fault("auth", { hang: true });
      const holder = plugin(rig, dir, `iad.ocir.io/${ns}/app:1`);
      // Federation is under the lock: while its request hangs, the holder sits in the lock.
      await waitForRequest(rig, (e) => e.service === "auth" && e.reason === "fault: hang");
      const impatient = await plugin(rig, dir, `iad.ocir.io/${ns}/other:1`, 2).done;
      assert.equal(impatient.code, 1);
      assert.equal(impatient.stdout, "");
      assert.match(
        impatient.stderr,
        /^oke-credential-provider level=error step=cache msg="the invocation's deadline ran out during this step .*"\n$/,
      );
      const waiter = plugin(rig, dir, `iad.ocir.io/${ns}/third:1`);
      emu.clearFaults();
      await sleep(500); // lets the waiter reach the lock (it passes either way)
      holder.child.kill("SIGKILL");
      assert.equal((await holder.done).signal, "SIGKILL");
      password(await waiter.done, "iad.ocir.io");
      const mark = emu.requests.length;
      password(await plugin(rig, dir, `iad.ocir.io/${ns}/app:1`).done, "iad.ocir.io");
      assert.deepEqual(emu.requests.slice(mark), [], "the next one is served from the cache");
    });

    await step("processes killed at random moments of the cold path", undefined, async (dir) => {
      const image = `iad.ocir.io/${ns}/app:1`;
      const started = Date.now();
      password(await plugin(rig, dir, image).done, "iad.ocir.io");
      const span = Date.now() - started; // how long a cold run takes here
      const kills: number[] = [];
      for (let i = 0; i < 12; i++) {
        // Every third round from nothing (federation), the others only the docker token.
        for (const entry of Deno.readDirSync(dir)) {
          if (
            entry.name.startsWith("docker-") || (i % 3 === 0 && entry.name === "session.json")
          ) {
            Deno.removeSync(`${dir}/${entry.name}`);
          }
        }
        const victim = plugin(rig, dir, image);
        const at = Math.round(Math.random() * span * 1.2);
        kills.push(at);
        await sleep(at);
        try {
          victim.child.kill("SIGKILL");
        } catch {
          // it finished first
        }
        const run = await victim.done;
        assert.ok(run.signal === "SIGKILL" || run.code === 0, run.stderr);
        for (const line of run.stderr.split("\n").filter(Boolean)) assert.match(line, LOG_LINE);
        await assertCacheSound(dir, `killed at ${kills.join(", ")} ms of ${span}`);
      }
      password(await plugin(rig, dir, image).done, "iad.ocir.io");
      await assertCacheSound(dir, `after kills at ${kills.join(", ")} ms of ${span}`);
    });
  },
  { extraRegions: [{ regionId: "eu-frankfurt-1" }] },
);
