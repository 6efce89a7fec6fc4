/**
 * Issue 12, always warm: a stale token is answered at once while a detached process refreshes
 * it; one refresh for many callers; an auth outage shorter than the token's remaining life fails
 * no call; failed refreshes back off; a refresh killed mid-write leaves a valid cache; a spare
 * session key serves one federation only; an entry "obtained in the future" (the clock stepped
 * back) is never answered; `warm` fills the cache. All with real plugin processes on the emulator.
 */
import assert from "node:assert/strict";
import { type CachedDockerToken, dockerTokenPath, readDockerToken } from "../lib/cache.ts";
import { readRefreshRecord, refreshRecordPath } from "../lib/refresh_record.ts";
import type { Emulator, EmulatorOptions } from "./emulator/mod.ts";
import { emulatorTest } from "./support/emulator.ts";
import {
  kubeletRequest,
  makeCacheDir,
  type PluginRun,
  runPlugin,
  settled,
  startPlugin,
} from "./support/plugin_process.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Go duration (as the plugin writes them: h, m, s) in seconds. */
function seconds(duration: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$/.exec(duration);
  assert.ok(m, `not a duration: ${duration}`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3]);
}

interface Rig {
  emu: Emulator;
  dir: string;
  host: string;
  /** Runs the plugin once for the app image (debug log: it says how it answered). */
  call(): Promise<PluginRun>;
  start(): ReturnType<typeof startPlugin>;
  /** The cached entry as on disk. */
  entry(): Promise<CachedDockerToken>;
  /** Rewrites the cached entry. */
  edit(change: (e: CachedDockerToken) => void): Promise<void>;
  /** Token and OCIR token-endpoint requests since `mark`. */
  authRequests(mark: number): number;
}

/** A test with its own emulator and cache directory, its background work waited for at the end. */
function test(name: string, options: EmulatorOptions, fn: (rig: Rig) => Promise<void>) {
  emulatorTest(name, async (_t, { emu }) => {
    const dir = await makeCacheDir("r-");
    const host = emu.registryHost;
    const start = () =>
      startPlugin({
        stdin: kubeletRequest(`${host}/${emu.namespace}/app:1`),
        env: { ...emu.env, OKE_CREDENTIAL_PROVIDER_LOG_LEVEL: "debug" },
        args: ["--cache-dir", dir],
      });
    const entry = async () => JSON.parse(await Deno.readTextFile(dockerTokenPath(dir, host)));
    try {
      await fn({
        emu,
        dir,
        host,
        start,
        call: () => start().done,
        entry,
        edit: async (change) => {
          const e = await entry();
          change(e);
          await Deno.writeTextFile(dockerTokenPath(dir, host), JSON.stringify(e));
        },
        authRequests: (mark) =>
          emu.requests.slice(mark).filter((r) =>
            r.service === "auth" || (r.service === "ocir" && r.path.endsWith("/docker/token"))
          ).length,
      });
    } finally {
      await settled(dir).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  }, options);
}

/** The password a run answered, asserting it succeeded; and how it says it answered. */
function answer(run: PluginRun): { password: string; answered: string; cacheSeconds: number } {
  assert.equal(run.code, 0, run.stderr);
  const [password] = Object.values(run.response!.auth).map((a) => a.password);
  assert.ok(password, run.stdout);
  const answered = /msg="answered \((\w+)\)"/.exec(run.stderr)?.[1];
  assert.ok(answered, run.stderr);
  return { password, answered, cacheSeconds: seconds(run.response!.cacheDuration) };
}

/** A cold call, its background work done, then the entry made stale: its refresh point passed. */
async function staleToken(rig: Rig): Promise<string> {
  const cold = answer(await rig.call());
  assert.equal(cold.answered, "cold");
  await settled(rig.dir);
  await rig.edit((e) => e.refreshAt = Date.now() / 1000 - 1);
  return cold.password;
}

test(
  "a stale token is answered at once; the refresh neither delays the answer nor holds the pipes",
  {},
  async (rig) => {
    const old = await staleToken(rig);
    const tokens = rig.emu.counters.dockerTokens;
    rig.emu.fault("ocir:/docker/token", { latencyMs: 6000 });
    const started = performance.now();
    // startPlugin reads stdout and stderr to EOF and waits for the exit, as os/exec does.
    const stale = answer(await rig.call());
    const waited = performance.now() - started;
    assert.equal(stale.answered, "stale");
    assert.equal(stale.password, old);
    assert.ok(stale.cacheSeconds <= 60, `a stale answer is kept briefly: ${stale.cacheSeconds} s`);
    assert.ok(waited < 3000, `the caller waited ${Math.round(waited)} ms for a 6 s refresh`);
    assert.equal(rig.emu.counters.dockerTokens, tokens, "the refresh was still running");
    await settled(rig.dir);
    assert.equal(rig.emu.counters.dockerTokens, tokens + 1, "the refresh finished");
    const after = answer(await rig.call());
    assert.equal(after.answered, "fresh");
    assert.notEqual(after.password, old);
    assert.equal((await readRefreshRecord(rig.dir, rig.host))?.ok, true);
  },
);

test("32 concurrent calls on a stale token start exactly one refresh", {}, async (rig) => {
  const old = await staleToken(rig);
  const { dockerTokens, federations } = rig.emu.counters;
  // A slow refresh, so that all 32 calls meet it running, however slowly they start.
  rig.emu.fault("ocir:/docker/token", { latencyMs: 8000 });
  const runs = await Promise.all(Array.from({ length: 32 }, () => rig.call()));
  for (const run of runs) {
    const a = answer(run);
    assert.equal(a.answered, "stale");
    assert.equal(a.password, old);
  }
  assert.equal(runs.filter((r) => r.stderr.includes("background refresh started")).length, 1);
  await settled(rig.dir);
  assert.equal(rig.emu.counters.dockerTokens, dockerTokens + 1, "one docker token");
  assert.equal(rig.emu.counters.federations, federations, "the cached session was reused");
});

test("an auth outage shorter than the token's remaining life fails no call", {
  dockerTokenTtl: 60,
}, async (rig) => {
  const old = await staleToken(rig);
  const down = { status: Array(10_000).fill(503) };
  rig.emu.fault("auth", down);
  rig.emu.fault("ocir:/docker/token", down);
  const until = Date.now() + 5000;
  let calls = 0;
  while (Date.now() < until) {
    const a = answer(await rig.call());
    assert.equal(a.password, old, "the cached token, while it is usable");
    assert.equal(a.answered, "stale");
    calls++;
    await sleep(200);
  }
  await settled(rig.dir);
  const failed = await readRefreshRecord(rig.dir, rig.host);
  assert.equal(failed?.ok, false);
  assert.match(failed!.reason!, /OCIR token.*503/);
  rig.emu.clearFaults();
  // The backoff of a 60 s token is a second or two; then the next call starts a refresh.
  await sleep(failed!.retryAt * 1000 - Date.now() + 100);
  assert.equal(answer(await rig.call()).answered, "stale");
  await settled(rig.dir);
  assert.equal((await readRefreshRecord(rig.dir, rig.host))?.ok, true, `after ${calls} calls`);
  const after = answer(await rig.call());
  assert.equal(after.answered, "fresh");
  assert.notEqual(after.password, old);
});

test(
  "failed refreshes back off: no auth request until the record's retry time",
  {},
  async (rig) => {
    const old = await staleToken(rig);
    const down = { status: Array(10_000).fill(503) };
    rig.emu.fault("auth", down);
    rig.emu.fault("ocir:/docker/token", down);
    assert.equal(answer(await rig.call()).answered, "stale");
    await settled(rig.dir);
    const first = (await readRefreshRecord(rig.dir, rig.host))!;
    assert.equal(first.failures, 1);
    // An hour-long token: 15 s before the first retry, doubling.
    assert.equal(Math.round(first.retryAt - first.at), 15);
    const mark = rig.emu.requests.length;
    for (let i = 0; i < 10; i++) assert.equal(answer(await rig.call()).password, old);
    await settled(rig.dir);
    assert.equal(rig.authRequests(mark), 0, "no refresh during the backoff");
    assert.equal((await readRefreshRecord(rig.dir, rig.host))!.failures, 1);
    // Time passes: the retry time is reached, one more refresh fails and the wait doubles.
    const record = refreshRecordPath(rig.dir, rig.host);
    await Deno.writeTextFile(record, JSON.stringify({ ...first, retryAt: Date.now() / 1000 - 1 }));
    answer(await rig.call());
    await settled(rig.dir);
    const second = (await readRefreshRecord(rig.dir, rig.host))!;
    assert.equal(second.failures, 2);
    assert.equal(Math.round(second.retryAt - second.at), 30);
    assert.ok(rig.authRequests(mark) > 0 && rig.authRequests(mark) <= 5, "one refresh's attempts");
  },
);

test("a refresh killed with SIGKILL at any moment leaves a valid cache", {}, async (rig) => {
  await staleToken(rig);
  for (let round = 0; round < 8; round++) {
    await rig.edit((e) => e.refreshAt = Date.now() / 1000 - 1);
    // A killed refresh leaves its claim behind (it expires after the timeout); clear it to go on.
    await Deno.remove(`${rig.dir}/refresh-${rig.host}.claim`).catch(() => {});
    const run = await rig.call();
    answer(run);
    const pid = Number(/background refresh started \(process (\d+)\)/.exec(run.stderr)?.[1]);
    assert.ok(pid > 0, run.stderr);
    await sleep(Math.random() * 600);
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // it had finished
    }
    await sleep(100);
    for (const name of Deno.readDirSync(rig.dir)) {
      if (!name.name.endsWith(".json")) continue;
      const text = Deno.readTextFileSync(`${rig.dir}/${name.name}`);
      assert.doesNotThrow(() => JSON.parse(text), `${name.name} is torn (round ${round})`);
    }
    assert.ok(await readDockerToken(rig.dir, rig.host), `the entry is usable (round ${round})`);
  }
  await Deno.remove(`${rig.dir}/refresh-${rig.host}.claim`).catch(() => {});
  answer(await rig.call());
});

test("a spare session key is used for one federation only", {}, async (rig) => {
  answer(await rig.call());
  await settled(rig.dir);
  const spareFile = `${rig.dir}/session-key.spare.json`;
  for (let round = 0; round < 4; round++) {
    const spare = JSON.parse(await Deno.readTextFile(spareFile)).publicKey;
    assert.equal((Deno.statSync(spareFile).mode ?? 0) & 0o777, 0o600);
    // Nothing cached but the spare: three calls at once, one of them federates.
    await Deno.remove(`${rig.dir}/session.json`);
    await Deno.remove(dockerTokenPath(rig.dir, rig.host));
    const runs = await Promise.all([rig.call(), rig.call(), rig.call()]);
    runs.forEach(answer);
    assert.equal(rig.emu.sessionKeys.at(-1), spare, "the federation used the spare");
    assert.ok(runs.some((r) => r.stderr.includes("session key made ahead of use")));
    await settled(rig.dir);
  }
  const keys = rig.emu.sessionKeys;
  assert.equal(new Set(keys).size, keys.length, "no session key was used twice");
});

test(
  "an entry obtained in the future (the clock stepped back a day) is not answered",
  {},
  async (rig) => {
    const first = answer(await rig.call());
    await settled(rig.dir);
    const day = 86400;
    await rig.edit((e) => {
      e.obtainedAt += day;
      e.refreshAt += day;
    });
    const tokens = rig.emu.counters.dockerTokens;
    const run = answer(await rig.call());
    assert.equal(run.answered, "cold");
    assert.notEqual(run.password, first.password);
    assert.equal(rig.emu.counters.dockerTokens, tokens + 1);
    const e = await rig.entry();
    assert.ok(run.cacheSeconds <= e.expiresAt - e.issuedAt, `${run.cacheSeconds} s`);
    assert.ok(e.obtainedAt <= Date.now() / 1000);
  },
);

test("warm caches the region's OCIR hosts, or the ones given, and a spare key", {}, async (rig) => {
  const warm = await runPlugin({
    stdin: "",
    env: rig.emu.env,
    args: ["warm", "--cache-dir", rig.dir],
  });
  assert.equal(warm.code, 0, warm.stderr);
  const hosts = ["iad.ocir.io", "us-ashburn-1.ocir.io", "ocir.us-ashburn-1.oci.oraclecloud.com"];
  assert.deepEqual(
    warm.stdout.split("\n").filter(Boolean).map((l) => l.split(":")[0]),
    hosts.map((h) => `✓ ${h}`),
  );
  for (const host of hosts) assert.ok(await readDockerToken(rig.dir, host), host);
  assert.ok(Deno.statSync(`${rig.dir}/session-key.spare.json`).isFile);
  assert.equal(rig.emu.counters.federations, 1);
  assert.equal(answer(await rig.call()).answered, "fresh");

  const given = await runPlugin({
    stdin: "",
    env: rig.emu.env,
    args: [
      "warm",
      "--cache-dir",
      rig.dir,
      "--registry",
      "fra.ocir.io",
      "--registry",
      "iad.ocir.io",
    ],
  });
  assert.equal(given.code, 1, "fra.ocir.io is not served by this emulator");
  assert.match(given.stdout, /^✗ fra\.ocir\.io: .*\n✓ iad\.ocir\.io: token cached/);
  const bad = await runPlugin({
    stdin: "",
    env: rig.emu.env,
    args: ["warm", "--registry", "docker.io"],
  });
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout, "");
  assert.match(bad.stderr, /step=arguments .*docker\.io is not an OCIR host/);
});
