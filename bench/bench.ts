/**
 * `deno task bench`: how long kubelet waits for a docker token, against the OCI emulator with
 * injected round-trip latencies, next to the official SDK doing the same job and next to the
 * floor (an empty Deno program's start plus the round trips no implementation can avoid).
 *
 * Every measured run is a process, timed from spawn to exit, as kubelet starts the plugin, and the
 * plugin starts the one way the tests start it (tests/support/plugin_process.ts): `deno run mod.ts`
 * under the release binary's permissions (scripts/build.ts), or the binary OKE_CP_TEST_BINARY
 * names. The numbers are the release binary's, not those of a run allowed everything. Runs
 * of different kinds are interleaved round by round, so that drift in the machine's speed
 * (other load, CPU frequency) spreads over all of them instead of biasing one. Peak RSS comes
 * from GNU time (`/usr/bin/time`, Debian package `time`) when it is installed.
 *
 * Flags (run counts; the defaults keep a run under ~5 minutes on 2 CPUs):
 *   --cold N      cold plugin runs per profile (15); also "cold, session cached"
 *   --warm N      warm plugin runs per profile, each of two kinds (30); also the empty program
 *   --sdk N       official-SDK runs per profile (15)
 *   --storms N    rounds of 16 and of 64 concurrent cold invocations per profile (3)
 *   --steps N     cold runs per variant read from the product's own timings, for "where the
 *                 time goes" (7)
 *   --imports N   fresh processes per module, for the import costs (10)
 *   --record N    warm runs with the status record on, and as many with it off (60); also the
 *                 fresh processes that time one record alone
 *
 * Output is Markdown, to paste into BENCHMARKS.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { recordOutcome } from "../lib/status.ts";
import { MAX_EVENTS } from "../lib/status_record.ts";
import { type Emulator, type RequestLogEntry, startEmulator } from "../tests/emulator/mod.ts";
import {
  makeCacheDir,
  pluginCommand,
  settled,
  testPermissions,
} from "../tests/support/plugin_process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BENCH = `${ROOT}bench/`;

const { values: flags } = parseArgs({
  options: {
    cold: { type: "string", default: "15" },
    warm: { type: "string", default: "30" },
    sdk: { type: "string", default: "15" },
    storms: { type: "string", default: "3" },
    steps: { type: "string", default: "7" },
    imports: { type: "string", default: "10" },
    record: { type: "string", default: "60" },
  },
});
const count = (name: keyof typeof flags) => {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const COUNTS = {
  cold: count("cold"),
  warm: count("warm"),
  sdk: count("sdk"),
  storms: count("storms"),
  steps: count("steps"),
  imports: count("imports"),
  record: count("record"),
};

/** A latency profile: round trips injected per request, and the registry host asked. */
interface Profile {
  name: string;
  latency: { imds: number; auth: number; ocir: number };
  host: string;
}

// The instance lives in us-ashburn-1; the far profile pulls from Frankfurt's registry.
const PROFILES: Profile[] = [
  { name: "near", latency: { imds: 2, auth: 40, ocir: 40 }, host: "iad.ocir.io" },
  { name: "far region", latency: { imds: 2, auth: 40, ocir: 150 }, host: "fra.ocir.io" },
];
const STORM_SIZES = [16, 64];

// ---------------------------------------------------------------------------------------------
// Running processes

/** One process run. */
interface Run {
  /** Spawn to exit, milliseconds. */
  ms: number;
  /** When it was spawned, epoch ms (the emulator's log uses this clock). */
  spawnedAt: number;
  /** Peak resident set size, KiB (GNU time's %M), when /usr/bin/time exists. */
  rssKb?: number;
  /** User + system CPU time, ms (GNU time's %U + %S, 10 ms resolution). */
  cpuMs?: number;
  code: number;
  stdout: string;
  stderr: string;
}

const GNU_TIME = "/usr/bin/time";
const hasGnuTime = await Deno.stat(GNU_TIME).then((s) => s.isFile, () => false);
// Under the root the plugin's permissions allow, since the plugin caches in directories of it.
const tmp = await makeCacheDir("bench-");
let serial = 0;

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/**
 * The environment of a child: nothing of ours but what finds Deno and its cache, and
 * LD_PRELOAD, so that `LD_PRELOAD=… deno task bench` can change every process alike (see
 * bench/nodelay.c).
 */
function childEnv(emu: Emulator, extra: Record<string, string> = {}): Record<string, string> {
  const inherited = Object.fromEntries(
    ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "LD_PRELOAD"].flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  return { ...inherited, ...emu.env, DENO_NO_UPDATE_CHECK: "1", ...extra };
}

/** A program and its arguments. */
interface Command {
  program: string;
  args: string[];
}

/** `deno <args>`. */
const deno = (...args: string[]): Command => ({ program: Deno.execPath(), args });

/** Runs a command with `stdin`, timing it from spawn to exit. */
async function spawn(
  { program, args }: Command,
  env: Record<string, string>,
  stdin = "",
): Promise<Run> {
  const rssFile = `${tmp}/rss-${serial++}`;
  const command = hasGnuTime ? GNU_TIME : program;
  const argv = hasGnuTime ? ["-f", "%M %U %S", "-o", rssFile, program, ...args] : args;
  const start = performance.now();
  const child = new Deno.Command(command, {
    args: argv,
    cwd: ROOT,
    clearEnv: true,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const out = await child.output();
  const ms = performance.now() - start;
  const run: Run = {
    ms,
    spawnedAt: performance.timeOrigin + start,
    code: out.code,
    stdout: text(out.stdout),
    stderr: text(out.stderr),
  };
  if (hasGnuTime) {
    // GNU time writes "Command exited with non-zero status N" before its line on failure.
    const [kb, user, system] = (await Deno.readTextFile(rssFile)).trim().split("\n").at(-1)!
      .split(" ").map(Number);
    await Deno.remove(rssFile);
    run.rssKb = kb;
    run.cpuMs = (user + system) * 1000;
  }
  return run;
}

function fail(what: string, run: Run): never {
  throw new Error(`${what} failed (exit ${run.code}):\n${run.stdout}\n${run.stderr}`);
}

/** A kubelet request for an image on `host`. */
function request(host: string): string {
  return JSON.stringify({
    apiVersion: "credentialprovider.kubelet.k8s.io/v1",
    kind: "CredentialProviderRequest",
    image: `${host}/emutenancy/app:1.0`,
  });
}

/** Runs the plugin as kubelet would; a run that does not answer with a password stops the bench. */
async function plugin(
  emu: Emulator,
  host: string,
  cacheDir: string,
  how: "env" | "arg" = "env",
  settle = true,
): Promise<Run> {
  const run = how === "env"
    ? await spawn(
      pluginCommand({}),
      childEnv(emu, { OKE_CREDENTIAL_PROVIDER_CACHE_DIR: cacheDir }),
      request(host),
    )
    : await spawn(pluginCommand({ args: ["--cache-dir", cacheDir] }), childEnv(emu), request(host));
  let password;
  try {
    password = JSON.parse(run.stdout).auth[host].password;
  } catch {
    password = undefined;
  }
  if (run.code !== 0 || typeof password !== "string" || password === "") fail("plugin", run);
  // A cold run leaves a detached process making the next spare session key (issue 12): it must
  // not share the CPUs with whatever is measured next.
  if (settle) await settled(cacheDir);
  return run;
}

/** The official SDK doing the same job, as a user would write it (tests/emulator/sdk_probe.ts). */
async function sdk(emu: Emulator, host: string): Promise<Run> {
  const auth = emu.hosts.find((h) => h.startsWith("auth.us-ashburn-1."));
  const run = await spawn(
    deno(
      "run",
      "-A",
      new URL("../tests/emulator/sdk_probe.ts", import.meta.url).pathname,
      `https://${auth}`,
      host,
    ),
    childEnv(emu),
  );
  if (run.code !== 0 || !run.stdout.startsWith('{"status":200,')) fail("SDK path", run);
  return run;
}

async function empty(emu: Emulator): Promise<Run> {
  const run = await spawn(deno("run", "-A", `${BENCH}empty.ts`), childEnv(emu));
  if (run.code !== 0) fail("empty program", run);
  return run;
}

/** A JSON-printing helper script of bench/, run as a process. */
async function helper<T>(emu: Emulator, script: string, args: string[]): Promise<T> {
  const run = await spawn(deno("run", "-A", `${BENCH}${script}`, ...args), childEnv(emu));
  if (run.code !== 0) fail(script, run);
  return JSON.parse(run.stdout);
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

interface Stats {
  n: number;
  median: number;
  q1: number;
  q3: number;
  min: number;
  max: number;
}

function quantile(sorted: number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  return sorted[low] + (sorted[Math.ceil(at)] - sorted[low]) * (at - low);
}

function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    median: quantile(s, 0.5),
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    min: s[0],
    max: s[s.length - 1],
  };
}

const median = (values: number[]) => stats(values).median;
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const spread = (s: Stats) => `${ms(s.median)} (${ms(s.q1)}–${ms(s.q3)})`;
const mib = (kb: number) => `${(kb / 1024).toFixed(0)} MiB`;
const rss = (runs: Run[]) => hasGnuTime ? mib(median(runs.map((r) => r.rssKb!))) : "n/a";
const cpu = (runs: Run[]) => hasGnuTime ? ms(median(runs.map((r) => r.cpuMs!))) : "n/a";

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Measurements

/** Runs each kind `count` times, one of each per round, so that drift hits all kinds alike. */
async function interleaved(kinds: { count: number; run: (i: number) => Promise<Run> }[]) {
  const results: Run[][] = kinds.map(() => []);
  const rounds = Math.max(...kinds.map((k) => k.count));
  for (let i = 0; i < rounds; i++) {
    for (const [k, kind] of kinds.entries()) {
      if (i < kind.count) results[k].push(await kind.run(i));
    }
  }
  return results;
}

/** The modules lib/plugin.ts (all mod.ts imports) loads at start, from its source; type-only
 * imports are erased. */
async function warmPathModules(): Promise<string[]> {
  const plugin = new URL("lib/plugin.ts", `file://${ROOT}`);
  const source = await Deno.readTextFile(plugin);
  return [...source.matchAll(/^import\s+(?!type\s)[^;]*?from\s+"(\.\/[^"]+)";/gm)]
    .map((m) => new URL(m[1], plugin).href);
}

async function importCosts(emu: Emulator): Promise<string> {
  const warm = await warmPathModules();
  const entries: [string, string[]][] = [
    ["an empty module (baseline)", [`file://${BENCH}empty.ts`]],
    ...warm.map((m): [string, string[]] => [m.slice(`file://${ROOT}`.length), [m]]),
    ["lib/plugin.ts with all it imports (the warm path)", [`file://${ROOT}lib/plugin.ts`]],
    ["node:util (loaded only when arguments are given)", ["node:util"]],
    ["lib/credentials.ts (the cold path, imported on a cache miss)", [
      `file://${ROOT}lib/credentials.ts`,
    ]],
    ["oci-common (the official SDK)", ["oci-common"]],
  ];
  const times: number[][] = entries.map(() => []);
  for (let i = 0; i < COUNTS.imports; i++) {
    for (const [k, [, specifiers]] of entries.entries()) {
      times[k].push((await helper<{ ms: number }>(emu, "import_cost.ts", specifiers)).ms);
    }
  }
  return table(
    ["module (with what it imports)", "import in a fresh process, ms: median (IQR)"],
    entries.map(([name], k) => [name, spread(stats(times[k]))]),
  );
}

/** What bench/cold_run.ts prints: the product's own marks and measures of one real run. */
interface ColdRun {
  status: number;
  /** When the runtime started, epoch ms; entries count from here. */
  timeOrigin: number;
  entries: { name: string; entryType: string; startTime: number; duration: number }[];
}

/**
 * What recording each call's outcome (lib/status.ts) adds to the warm path: warm runs with it on
 * and off (OKE_CREDENTIAL_PROVIDER_RECORD=false), interleaved, on a full record (MAX_EVENTS
 * events, as on a node with some history); and, robust to a busy machine that blurs whole runs,
 * the recording's own parts timed alone: importing lib/status.ts, and one record.
 */
async function recordingCost(emu: Emulator, profile: Profile): Promise<string> {
  emu.latency(profile.latency);
  const { host } = profile;
  const dir = `${tmp}/record`;
  await plugin(emu, host, dir);
  const at = Math.floor(Date.now() / 1000);
  for (let i = 0; i < MAX_EVENTS; i++) {
    await recordOutcome(
      dir,
      host,
      i % 2
        ? { outcome: "cold", token: { obtainedAt: at, refreshAt: at + 3000, expiresAt: at + 3300 } }
        : {
          outcome: "failed",
          error: {
            step: "federation",
            code: "HTTP_STATUS",
            message: "HTTP 401 NotAuthenticated",
            hint: "check the node's clock",
          },
        },
    );
  }
  const warm = (record: boolean) => async () => {
    const before = emu.requests.length;
    const run = await spawn(
      pluginCommand({}),
      childEnv(emu, {
        OKE_CREDENTIAL_PROVIDER_CACHE_DIR: dir,
        ...(record ? {} : { OKE_CREDENTIAL_PROVIDER_RECORD: "false" }),
      }),
      request(host),
    );
    if (run.code !== 0 || emu.requests.length !== before) fail("warm run", run);
    return run;
  };
  const [on, off] = await interleaved([
    { count: COUNTS.record, run: warm(true) },
    { count: COUNTS.record, run: warm(false) },
  ]);
  // The recording's own parts, each in a fresh process: importing lib/status.ts (beyond what
  // the warm path loads anyway), and one record.
  const alone: number[] = [];
  const imports: number[] = [];
  // What lib/status.ts imports is on the warm path anyway: only its own share counts.
  const base = ["cache.ts", "errors.ts", "log.ts"].map((m) => `file://${ROOT}lib/${m}`);
  const status = `file://${ROOT}lib/status.ts`;
  for (let i = 0; i < COUNTS.record; i++) {
    alone.push((await helper<{ ms: number }>(emu, "record_cost.ts", [dir, host])).ms);
    const without = await helper<{ ms: number }>(emu, "import_cost.ts", base);
    const withStatus = await helper<{ ms: number }>(emu, "import_cost.ts", [...base, status]);
    imports.push(withStatus.ms - without.ms);
  }
  const size = (await Deno.stat(`${dir}/status-${host}.json`)).size;
  return table(["warm run (cached docker token)", "ms: median (IQR)"], [
    [`record on (n=${on.length})`, spread(stats(on.map((r) => r.ms)))],
    [`record off (n=${off.length})`, spread(stats(off.map((r) => r.ms)))],
    ["added by recording: median on − median off", ms(medianMs(on) - medianMs(off))],
    [
      "**added by recording**: median of the paired differences (each on run − the off run after it)",
      `**${spread(stats(on.map((r, i) => r.ms - off[i].ms)))}**`,
    ],
    [
      `importing lib/status.ts beyond what it imports (paired, n=${imports.length})`,
      spread(stats(imports)),
    ],
    [
      `one record alone, in a fresh process (n=${alone.length}; record of ${size} bytes)`,
      spread(stats(alone)),
    ],
    [
      "the recording's own parts: import + one record (medians)",
      ms(median(imports) + median(alone)),
    ],
  ]);
}

/** One timed cold run: what it recorded, and what the bench saw from outside. */
interface TimedColdRun {
  run: ColdRun;
  spawnedAt: number;
  exitMs: number;
  /** How long the emulator held each HTTPS request, by service. */
  inEmulator: Record<string, number>;
}

/** Milliseconds from the first start to the last end of the measures named `name`. */
function span(r: ColdRun, name: string): number | undefined {
  const all = r.entries.filter((e) => e.entryType === "measure" && e.name === name);
  if (all.length === 0) return undefined;
  const start = Math.min(...all.map((e) => e.startTime));
  return Math.max(...all.map((e) => e.startTime + e.duration)) - start;
}

/**
 * Where a cold invocation's time goes, read from the real code's own `performance` entries
 * (lib/http.ts measures each call by step, lib/federation.ts the key generation, lib/plugin.ts
 * marks the cache miss): no copy of the cold path is timed.
 */
async function coldSteps(emu: Emulator, profile: Profile): Promise<string> {
  const variants = ["empty cache", "session cached"];
  const results: TimedColdRun[][] = variants.map(() => []);
  for (let i = 0; i < COUNTS.steps; i++) {
    const dir = `${tmp}/steps-${i}`;
    for (const k of variants.keys()) {
      // The second run finds the session the first cached, but no docker token.
      if (k === 1) await Deno.remove(`${dir}/docker-${profile.host}.json`);
      const first = emu.requests.length;
      // The real command in-process, under the plugin's own permissions.
      const run = await spawn(
        deno("run", ...testPermissions(), "--quiet", `${BENCH}cold_run.ts`, "--cache-dir", dir),
        childEnv(emu),
        request(profile.host),
      );
      if (run.code !== 0) fail("cold_run.ts", run);
      const inEmulator = Object.fromEntries(
        emu.requests.slice(first).filter((e) => e.service === "auth" || e.service === "ocir")
          .map((e) => [e.service, answeredAt.get(e)! - e.at]),
      );
      results[k].push({
        run: JSON.parse(run.stdout),
        spawnedAt: run.spawnedAt,
        exitMs: run.ms,
        inEmulator,
      });
    }
  }
  const missed = (r: TimedColdRun) => {
    const mark = r.run.entries.find((e) => e.name === "cache missed");
    return mark && r.run.timeOrigin + mark.startTime - r.spawnedAt;
  };
  const rows: [string, (r: TimedColdRun) => number | undefined][] = [
    ["runtime started (ms after spawn)", (r) => r.run.timeOrigin - r.spawnedAt],
    ["request read, cache missed (ms after spawn)", missed],
    ["session key generation (overlaps IMDS)", (r) => span(r.run, "session key")],
    ["IMDS (4 requests in parallel)", (r) => span(r.run, "IMDS")],
    ["federation", (r) => span(r.run, "federation")],
    ["OCIR token", (r) => span(r.run, "OCIR token")],
    ["**spawn to exit**", (r) => r.exitMs],
  ];
  const cell = (runs: TimedColdRun[], f: (r: TimedColdRun) => number | undefined) => {
    const values = runs.map(f).filter((v): v is number => v !== undefined);
    return values.length ? ms(median(values)) : "—";
  };
  const steps = table(
    ["step (ms, median)", ...variants],
    rows.map(([name, f]) => [name, ...results.map((runs) => cell(runs, f))]),
  );
  // The two HTTPS steps of an empty-cache run, split into what the emulator and the client did.
  const inside = (service: "auth" | "ocir", step: string) => {
    const client = median(results[0].map((r) => span(r.run, step)!));
    const held = median(results[0].map((r) => r.inEmulator[service]));
    const latency = profile.latency[service];
    return [step, ms(client), String(latency), ms(held - latency), ms(client - held)];
  };
  const split = table(
    [
      "HTTPS step, empty cache (ms, median)",
      "client",
      "emulator: injected latency",
      "emulator: its own work",
      "rest: connection, TLS, transfer, signing",
    ],
    [inside("auth", "federation"), inside("ocir", "OCIR token")],
  );
  return `${steps}\n\n${split}`;
}

/** What one cold plugin run and one SDK run put on the wire, and when. */
async function timeline(emu: Emulator, profile: Profile): Promise<string> {
  const rows: string[][] = [];
  const runs: [string, () => Promise<Run>][] = [
    ["plugin", () => plugin(emu, profile.host, `${tmp}/timeline`)],
    ["official SDK", () => sdk(emu, profile.host)],
  ];
  for (const [who, go] of runs) {
    const first = emu.requests.length;
    const run = await go();
    for (const e of emu.requests.slice(first)) {
      const what = e.service === "proxy" ? `CONNECT ${e.host}` : `${e.method} ${e.host}${e.path}`;
      const end = answeredAt.get(e);
      rows.push([
        who,
        `${e.service} ${what}`,
        ms(e.at - run.spawnedAt),
        end === undefined ? "" : ms(end - run.spawnedAt),
      ]);
    }
    rows.push([who, "**exit**", "", `**${ms(run.ms)}**`]);
  }
  return table(["run", "request", "arrived, ms after spawn", "answered"], rows);
}

async function connectionCost(emu: Emulator): Promise<string> {
  const runs: { firstA: number; againA: number; firstB: number }[] = [];
  for (let i = 0; i < COUNTS.steps; i++) {
    runs.push(await helper(emu, "connection_cost.ts", ["iad.ocir.io", "us-ashburn-1.ocir.io"]));
  }
  const again = median(runs.map((r) => r.againA));
  return table(["request", "ms, median"], [
    ["on a reused connection (the request alone)", ms(again)],
    [
      "first HTTPS request of the process: + TLS library start-up, handshake",
      `${ms(median(runs.map((r) => r.firstA)))} (+${
        ms(median(runs.map((r) => r.firstA)) - again)
      })`,
    ],
    [
      "first request to a second host: + handshake",
      `${ms(median(runs.map((r) => r.firstB)))} (+${
        ms(median(runs.map((r) => r.firstB)) - again)
      })`,
    ],
  ]);
}

/** What a storm asked of OCI: security tokens, docker tokens, IMDS answers. */
interface Counts {
  federations: number;
  dockerTokens: number;
  imds: number;
}

interface ProfileResult {
  empty: Run[];
  cold: Run[];
  coldSession: Run[];
  warmEnv: Run[];
  warmArg: Run[];
  sdk: Run[];
  storms: Map<number, { wallMs: number; counts: Counts; runs: Run[] }[]>;
}

async function measureProfile(emu: Emulator, profile: Profile): Promise<ProfileResult> {
  emu.latency(profile.latency);
  const { host } = profile;
  const dir = `${tmp}/${profile.name.replaceAll(" ", "-")}`;
  await Deno.mkdir(dir);
  // Warm-up, not measured: fills Deno's caches and makes the cache the warm runs read.
  const warmDir = `${dir}/warm`;
  await empty(emu);
  await sdk(emu, host);
  await plugin(emu, host, warmDir);
  const session = await Deno.readTextFile(`${warmDir}/session.json`);

  const warm = (how: "env" | "arg") => async () => {
    const before = emu.requests.length;
    const run = await plugin(emu, host, warmDir, how);
    if (emu.requests.length !== before) throw new Error("a warm run used the network");
    return run;
  };
  const [empties, cold, coldSession, warmEnv, warmArg, sdks] = await interleaved([
    { count: COUNTS.warm, run: () => empty(emu) },
    { count: COUNTS.cold, run: (i) => plugin(emu, host, `${dir}/cold-${i}`) },
    {
      count: COUNTS.cold,
      run: async (i) => {
        // A cache holding only a valid security token: a second registry, or a new docker
        // token within the security token's 20 minutes.
        const cache = `${dir}/session-${i}`;
        await Deno.mkdir(cache, { mode: 0o700 });
        await Deno.writeTextFile(`${cache}/session.json`, session, { mode: 0o600 });
        return await plugin(emu, host, cache);
      },
    },
    { count: COUNTS.warm, run: warm("env") },
    { count: COUNTS.warm, run: warm("arg") },
    { count: COUNTS.sdk, run: () => sdk(emu, host) },
  ]);

  const storms: ProfileResult["storms"] = new Map(STORM_SIZES.map((n) => [n, []]));
  for (let round = 0; round < COUNTS.storms; round++) {
    for (const n of STORM_SIZES) {
      const cache = `${dir}/storm-${n}-${round}`;
      const before = { ...emu.counters };
      const start = performance.now();
      const runs = await Promise.all(
        Array.from({ length: n }, () => plugin(emu, host, cache, "env", false)),
      );
      const wallMs = performance.now() - start;
      await settled(cache);
      const counts = {
        federations: emu.counters.federations - before.federations,
        dockerTokens: emu.counters.dockerTokens - before.dockerTokens,
        imds: emu.counters.imds - before.imds,
      };
      storms.get(n)!.push({ wallMs, counts, runs });
    }
  }
  return { empty: empties, cold, coldSession, warmEnv, warmArg, sdk: sdks, storms };
}

// ---------------------------------------------------------------------------------------------
// Report

function floorOf(profile: Profile, r: ProfileResult): number {
  const { imds, auth, ocir } = profile.latency;
  return median(r.empty.map((x) => x.ms)) + imds + auth + ocir;
}

function mainTable(results: ProfileResult[]): string {
  const row = (label: string, pick: (r: ProfileResult) => Run[]) => [
    `${label} (n=${pick(results[0]).length})`,
    ...results.flatMap((r) => [
      spread(stats(pick(r).map((x) => x.ms))),
      cpu(pick(r)),
      rss(pick(r)),
    ]),
  ];
  const profileCells = (f: (p: Profile, r: ProfileResult) => string) =>
    results.flatMap((r, k) => [f(PROFILES[k], r), "", ""]);
  return table(
    [
      "run",
      ...PROFILES.flatMap((p) => [`${p.name}: ms, median (IQR)`, "CPU ms", "peak RSS"]),
    ],
    [
      row("empty Deno program", (r) => r.empty),
      [
        "**floor** = empty start + IMDS + auth + OCIR round trips",
        ...profileCells((p, r) =>
          `**${ms(floorOf(p, r))}** (= ${ms(median(r.empty.map((x) => x.ms)))} + ${
            p.latency.imds + p.latency.auth + p.latency.ocir
          })`
        ),
      ],
      row("**cold**: empty cache", (r) => r.cold),
      row("cold, security token cached", (r) => r.coldSession),
      row("**warm**: cached docker token, cache dir from env", (r) => r.warmEnv),
      row("warm, `--cache-dir DIR` argument", (r) => r.warmArg),
      row("**official SDK** (oci-common), cold", (r) => r.sdk),
    ],
  );
}

function stormTable(results: ProfileResult[]): string {
  const rows = results.flatMap((r, k) =>
    STORM_SIZES.map((n) => {
      const rounds = r.storms.get(n)!;
      const walls = stats(rounds.map((s) => s.wallMs));
      const each = stats(rounds.flatMap((s) => s.runs.map((x) => x.ms)));
      const total = (f: (x: Run) => number) =>
        median(rounds.map((s) => s.runs.reduce((sum, x) => sum + f(x), 0)));
      // All processes' CPU time spread over every CPU: the least wall time the storm can take.
      const cpuSeconds = total((x) => x.cpuMs!) / 1000;
      return [
        `${PROFILES[k].name}, ${n} at once`,
        `${ms(walls.median)} (${ms(walls.min)}–${ms(walls.max)})`,
        `${ms(each.median)} / ${ms(each.max)}`,
        rounds.map(({ counts: c }) => `${c.federations} / ${c.dockerTokens} / ${c.imds}`)
          .join(", "),
        hasGnuTime
          ? `${cpuSeconds.toFixed(2)} s (≥ ${
            ms(cpuSeconds * 1000 / navigator.hardwareConcurrency)
          } ms wall)`
          : "n/a",
        rss(rounds.flatMap((s) => s.runs)),
        hasGnuTime ? mib(total((x) => x.rssKb!)) : "n/a",
      ];
    })
  );
  return table(
    [
      "storm (one empty cache)",
      "wall ms: median (min–max) of rounds",
      "one process ms: median / slowest",
      "federations / docker tokens / IMDS answers, per round",
      "CPU, all processes (÷ CPUs)",
      "peak RSS per process",
      "sum of peak RSS",
    ],
    rows,
  );
}

const medianMs = (runs: Run[]) => median(runs.map((x) => x.ms));

/** A target of issue 6: a ratio and the limit it should stay under. */
interface Target {
  label: string;
  limit: number;
  /** True for "less than", false for "at most". */
  strict: boolean;
  value(profile: Profile, r: ProfileResult): number;
}

const TARGETS: Target[] = [
  {
    label: "cold / official SDK",
    limit: 0.6,
    strict: false,
    value: (_, r) => medianMs(r.cold) / medianMs(r.sdk),
  },
  {
    label: "cold / floor",
    limit: 1.3,
    strict: false,
    value: (p, r) => medianMs(r.cold) / floorOf(p, r),
  },
  {
    label: "warm / empty Deno start",
    limit: 1.5,
    strict: false,
    value: (_, r) => medianMs(r.warmEnv) / medianMs(r.empty),
  },
  {
    label: "64 at once: wall / one cold",
    limit: 2,
    strict: true,
    value: (_, r) => median(r.storms.get(64)!.map((s) => s.wallMs)) / medianMs(r.cold),
  },
];

function ratioTable(results: ProfileResult[]): string {
  const verdict = (t: Target, v: number) =>
    (t.strict ? v < t.limit : v <= t.limit)
      ? "met"
      : `missed by ${((v / t.limit - 1) * 100).toFixed(0)}%`;
  const rows = TARGETS.map((t) => [
    t.label,
    ...results.flatMap((r, k) => {
      const v = t.value(PROFILES[k], r);
      return [v.toFixed(2), verdict(t, v)];
    }),
    `${t.strict ? "<" : "≤"} ${t.limit}`,
  ]);
  rows.push([
    "64 at once: federations per round",
    ...results.flatMap((r) => {
      const f = r.storms.get(64)!.map((s) => s.counts.federations);
      return [f.join(", "), f.every((x) => x === 1) ? "met" : "missed"];
    }),
    "1",
  ], [
    "warm with `--cache-dir` argument − warm with env, ms",
    ...results.flatMap((r) => [ms(medianMs(r.warmArg) - medianMs(r.warmEnv)), ""]),
    "",
  ]);
  return table(["ratio", ...PROFILES.flatMap((p) => [p.name, "verdict"]), "target"], rows);
}

// ---------------------------------------------------------------------------------------------
// Main

const started = performance.now();
const answeredAt = new Map<RequestLogEntry, number>();
const cpuModel = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
  .match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown CPU";
const memory = Deno.systemMemoryInfo();
const loadBefore = Deno.loadavg();

// One emulator serves every profile: only its injected latencies change. Its leaf certificate
// has one RDN per OU because oci-common cannot read the multi-valued RDN that real ones have
// (PROTOCOL.md §6); the plugin reads both. The emulator runs in this process, on the same CPUs.
const emu = await startEmulator({
  multiValuedRdn: false,
  extraRegions: [{ regionId: "eu-frankfurt-1" }],
  // When each request was answered: its time in the emulator is then known (latency + work).
  onRequest: (entry) => answeredAt.set(entry, Date.now()),
});
const out: string[] = [];
const say = (line = "") => {
  out.push(line);
  console.log(line);
};
try {
  say(`## Machine`);
  say();
  say(
    `${navigator.hardwareConcurrency} CPUs (${cpuModel}), ${
      (memory.total / 2 ** 30).toFixed(1)
    } GiB RAM, ${Deno.build.os} ${Deno.osRelease()}, Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); ` +
      `peak RSS ${hasGnuTime ? "from GNU time" : "not measured (install the `time` package)"}; ` +
      `load average before: ${loadBefore.map((l) => l.toFixed(2)).join(" ")}`,
  );
  say();
  emu.latency(PROFILES[0].latency);
  // Not measured: on a fresh clone these fill Deno's module and npm caches.
  await empty(emu);
  await sdk(emu, PROFILES[0].host);
  await plugin(emu, PROFILES[0].host, `${tmp}/first`);
  say(`## Where a cold invocation's time goes (profile ${PROFILES[0].name})`);
  say();
  say(await coldSteps(emu, PROFILES[0]));
  say();
  say(`What one cold run of each puts on the wire (same profile):`);
  say();
  say(await timeline(emu, PROFILES[0]));
  say();
  say(`What a new HTTPS connection costs a fresh process (same profile):`);
  say();
  say(await connectionCost(emu));
  say();
  say(`## Import cost of each module on the warm path`);
  say();
  say(await importCosts(emu));
  say();
  say(
    `## What recording each outcome for \`status\` adds to the warm path (profile ${
      PROFILES[0].name
    })`,
  );
  say();
  say(await recordingCost(emu, PROFILES[0]));
  say();
  const results: ProfileResult[] = [];
  for (const profile of PROFILES) {
    console.error(`measuring profile ${profile.name}…`);
    results.push(await measureProfile(emu, profile));
  }
  say(`## Invocations`);
  say();
  say(
    PROFILES.map((p) =>
      `${p.name}: IMDS ${p.latency.imds} ms, auth ${p.latency.auth} ms, OCIR ${p.latency.ocir} ms (${p.host})`
    ).join("; "),
  );
  say();
  say(mainTable(results));
  say();
  say(stormTable(results));
  say();
  say(ratioTable(results));
  say();
  say(
    `Bench took ${((performance.now() - started) / 1000).toFixed(0)} s; load average after: ${
      Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
    }.`,
  );
} finally {
  await emu.close();
  await Deno.remove(tmp, { recursive: true });
}
