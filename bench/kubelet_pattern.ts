/**
 * `deno task bench:kubelet`: the plugin driven the way kubelet drives it, against the OCI emulator
 * with short-lived tokens, and measured as kubelet sees it.
 *
 * A simulated kubelet pulls one image at a fixed rate. Like kubelet it keeps each answer in
 * memory for the answer's `cacheDuration` (from the moment the answer arrived) and calls the
 * plugin only for a pull that finds no kept answer; a pull that comes while a call runs waits for
 * that call (at most one call per image at a time). Each call is a real process started as the
 * tests start the plugin (tests/support/plugin_process.ts: the release permissions), timed from spawn until its stdout and stderr reach EOF and it has
 * exited, as Go's os/exec makes kubelet wait. A pull fails when its call fails or when the
 * token kubelet hands the runtime has expired.
 *
 * Reported: the share of calls after the first that were answered from disk (the plugin logs
 * which; at debug level, as are the reference runs) and how many of them within 1.5× the warm
 * path; the median and p95 of what kubelet waits; auth requests (federations + docker tokens)
 * per token life; refreshes per token; and failed pulls across an auth outage (federation and
 * OCIR's token endpoint answering 503) of half a token's life that covers a refresh point. Next
 * to them, a cold call that finds a spare session key, against the floor (an empty Deno
 * program's start plus one IMDS, auth and OCIR round trip).
 *
 * Flags: --ttl S (docker token life, 30), --interval S (between pulls, 1.5), --lives N (token
 * lives of steady state, 4), --runs N (reference runs of each kind, 15).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { makeSpareKey } from "../lib/session.ts";
import { type Emulator, startEmulator } from "../tests/emulator/mod.ts";
import { kubeletRequest, makeCacheDir, startPlugin } from "../tests/support/plugin_process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    ttl: { type: "string", default: "30" },
    interval: { type: "string", default: "1.5" },
    lives: { type: "string", default: "4" },
    runs: { type: "string", default: "15" },
  },
});
const TTL = Number(values.ttl);
const INTERVAL = Number(values.interval);
const LIVES = Number(values.lives);
const RUNS = Number(values.runs);
const LATENCY = { imds: 2, auth: 40, ocir: 40 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A new cache directory, 0700, where the plugin under the release permissions may write. */
const newDir = () => makeCacheDir("b-");

/** Waits until the background work a call started (refresh, spare key) has finished. */
async function settled(dir: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".claim"))) return;
    await sleep(50);
  }
  throw new Error(`background work in ${dir} did not finish`);
}

/** One process run, as os/exec sees it. */
interface Call {
  ms: number;
  ok: boolean;
  /** How the plugin says it answered: fresh, stale (from disk) or cold. */
  answered?: string;
  cacheSeconds: number;
  password?: string;
  stderr: string;
}

/** Go's `time.Duration` string, as kubelet parses `cacheDuration`, in seconds. */
function seconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/([0-9.]+)(h|m|s)/g)) {
    total += Number(n) * (unit === "h" ? 3600 : unit === "m" ? 60 : 1);
  }
  return total;
}

/** One plugin call as kubelet makes it (tests/plugin_process.ts: a clean environment). */
async function plugin(emu: Emulator, dir: string): Promise<Call> {
  const start = performance.now();
  const run = await startPlugin({
    stdin: kubeletRequest(`${emu.registryHost}/${emu.namespace}/app:1.0`),
    env: {
      ...emu.env,
      OKE_CREDENTIAL_PROVIDER_CACHE_DIR: dir,
      OKE_CREDENTIAL_PROVIDER_LOG_LEVEL: "debug",
    },
  }).done;
  const ms = performance.now() - start;
  const password = Object.values(run.response?.auth ?? {})[0]?.password;
  return {
    ms,
    ok: run.code === 0 && !!password,
    answered: /msg="answered \((\w+)\)"/.exec(run.stderr)?.[1],
    cacheSeconds: run.response ? seconds(run.response.cacheDuration) : 0,
    password,
    stderr: run.stderr,
  };
}

/** An empty Deno program's run, spawn to exit: the start-up no call can avoid. */
async function emptyProgram(): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}bench/empty.ts`],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  if (!out.success) throw new Error("the empty program failed");
  return performance.now() - start;
}

/** The `exp` of a docker token (a JWT), epoch seconds. */
function tokenExpiry(token: string): number {
  const payload = token.split(".")[1];
  return JSON.parse(
    new TextDecoder().decode(Uint8Array.fromBase64(payload, { alphabet: "base64url" })),
  )
    .exp;
}

// ---------------------------------------------------------------------------------------------
// Statistics

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const low = Math.floor(at);
  return s[low] + (s[Math.ceil(at)] - s[low]) * (at - low);
}
const median = (values: number[]) => quantile(values, 0.5);
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const pct = (part: number, whole: number) =>
  whole === 0 ? "n/a" : `${(100 * part / whole).toFixed(0)}% (${part}/${whole})`;

// ---------------------------------------------------------------------------------------------
// Reference runs: empty program, warm, stale, cold with and without a spare key.

interface Reference {
  empty: number;
  warm: number;
  /** The warm path's own 95th percentile: how much one machine's runs spread. */
  warmP95: number;
  stale: number;
  coldSpare: number;
  cold: number;
}

async function reference(emu: Emulator): Promise<Reference> {
  const times: Record<Exclude<keyof Reference, "warmP95">, number[]> = {
    empty: [],
    warm: [],
    stale: [],
    coldSpare: [],
    cold: [],
  };
  const warmDir = await newDir();
  const first = await plugin(emu, warmDir);
  if (!first.ok) throw new Error(`plugin failed:\n${first.stderr}`);
  await settled(warmDir);
  const expect = async (call: Call, answered: string, dir: string) => {
    if (!call.ok || call.answered !== answered) {
      throw new Error(`expected a ${answered} answer, got ${call.answered}:\n${call.stderr}`);
    }
    await settled(dir);
    return call.ms;
  };
  for (let i = 0; i < RUNS; i++) {
    times.empty.push(await emptyProgram());
    times.warm.push(await expect(await plugin(emu, warmDir), "fresh", warmDir));
    // A stale entry: the same token with its refresh point moved into the past. The refresh it
    // starts is waited for before the next run, so that it runs on an idle machine.
    const staleDir = await newDir();
    const entryFile = `${staleDir}/docker-${emu.registryHost}.json`;
    await Deno.copyFile(`${warmDir}/docker-${emu.registryHost}.json`, entryFile);
    await Deno.copyFile(`${warmDir}/session.json`, `${staleDir}/session.json`);
    const entry = JSON.parse(await Deno.readTextFile(entryFile));
    entry.obtainedAt = entry.refreshAt = Date.now() / 1000 - 1;
    await Deno.writeTextFile(entryFile, JSON.stringify(entry));
    times.stale.push(await expect(await plugin(emu, staleDir), "stale", staleDir));
    const spareDir = await newDir();
    await makeSpareKey(spareDir, AbortSignal.timeout(30_000));
    times.coldSpare.push(await expect(await plugin(emu, spareDir), "cold", spareDir));
    const coldDir = await newDir();
    times.cold.push(await expect(await plugin(emu, coldDir), "cold", coldDir));
  }
  return {
    empty: median(times.empty),
    warm: median(times.warm),
    warmP95: quantile(times.warm, 0.95),
    stale: median(times.stale),
    coldSpare: median(times.coldSpare),
    cold: median(times.cold),
  };
}

// ---------------------------------------------------------------------------------------------
// The kubelet pattern

interface Pattern {
  pulls: number;
  failedPulls: number;
  calls: Call[];
  seconds: number;
  federations: number;
  dockerTokens: number;
  /** Auth and OCIR token requests made during the outage, answered or not. */
  outageRequests?: number;
}

/**
 * Pulls every INTERVAL for `duration` seconds as kubelet does; `during` runs alongside (the
 * outage). The first call is the cold one and is left out of the call statistics.
 */
async function kubelet(
  emu: Emulator,
  duration: number,
  during?: (dir: string) => Promise<number>,
): Promise<Pattern> {
  const dir = await newDir();
  const federations = emu.counters.federations, dockerTokens = emu.counters.dockerTokens;
  let kept: { until: number; password: string } | undefined;
  let inflight: Promise<Call> | undefined;
  const calls: Call[] = [];
  let pulls = 0, failedPulls = 0;
  const start = performance.now();
  const side = during?.(dir);
  const pull = async () => {
    pulls++;
    if (!kept || performance.now() >= kept.until) {
      inflight ??= plugin(emu, dir).then((call) => {
        calls.push(call);
        inflight = undefined;
        if (call.ok) {
          kept = { until: performance.now() + call.cacheSeconds * 1000, password: call.password! };
        } else kept = undefined;
        return call;
      });
      if (!(await inflight).ok) return void failedPulls++;
    }
    if (!kept || tokenExpiry(kept.password) <= Date.now() / 1000) failedPulls++;
  };
  const pending: Promise<void>[] = [];
  for (let i = 0; performance.now() - start < duration * 1000; i++) {
    pending.push(pull());
    await sleep(start + (i + 1) * INTERVAL * 1000 - performance.now());
  }
  await Promise.all(pending);
  const outageRequests = await side;
  await settled(dir);
  return {
    pulls,
    failedPulls,
    calls,
    seconds: (performance.now() - start) / 1000,
    federations: emu.counters.federations - federations,
    dockerTokens: emu.counters.dockerTokens - dockerTokens,
    outageRequests,
  };
}

/**
 * An auth outage of half a token's life that starts a second before the cached token's refresh
 * point; returns how many auth and OCIR token requests arrived during it.
 */
async function outage(emu: Emulator, dir: string): Promise<number> {
  const file = `${dir}/docker-${emu.registryHost}.json`;
  // The first cold call writes the entry; the outage waits for the one after the next refresh,
  // so that it covers a refresh point of steady state.
  while (!await Deno.stat(file).catch(() => undefined)) await sleep(50);
  const first = JSON.parse(await Deno.readTextFile(file)).refreshAt;
  let refreshAt = first;
  while (refreshAt === first) {
    await sleep(100);
    refreshAt = JSON.parse(await Deno.readTextFile(file).catch(() => "{}")).refreshAt ?? first;
  }
  await sleep(refreshAt * 1000 - 1000 - Date.now());
  const mark = emu.requests.length;
  const down = { status: Array(100_000).fill(503) };
  emu.fault("auth", down);
  emu.fault("ocir:/docker/token", down);
  await sleep(TTL * 500);
  emu.clearFaults();
  return emu.requests.slice(mark).filter((r) =>
    r.service === "auth" || (r.service === "ocir" && r.path.endsWith("/docker/token"))
  ).length;
}

function report(name: string, p: Pattern, ref: Reference): string[][] {
  const later = p.calls.slice(1);
  const fromDisk = later.filter((c) => c.answered === "fresh" || c.answered === "stale");
  const quick = fromDisk.filter((c) => c.ms <= 1.5 * ref.warm);
  const lives = p.seconds / TTL;
  // Later calls only: the first (cold) one starts a process that only makes the spare key.
  const refreshes = later.filter((c) => c.stderr.includes("background refresh started (")).length;
  return [
    [name, "pulls / kubelet calls (the first one cold)", `${p.pulls} / ${p.calls.length}`],
    [name, "later calls answered from disk", pct(fromDisk.length, later.length)],
    [
      name,
      `… of those, within 1.5× the warm path (${ms(1.5 * ref.warm)} ms)`,
      pct(quick.length, fromDisk.length),
    ],
    [
      name,
      "kubelet's wait per later call, ms: median / p95 / max",
      later.length === 0
        ? "n/a"
        : `${ms(median(later.map((c) => c.ms)))} / ${
          ms(quantile(later.map((c) => c.ms), 0.95))
        } / ${ms(Math.max(...later.map((c) => c.ms)))}`,
    ],
    [
      name,
      "… by how they were answered: calls, ms median / max",
      (["fresh", "stale", "cold"] as const).map((kind) => {
        const of = later.filter((c) => c.answered === kind).map((c) => c.ms);
        return of.length === 0
          ? `${kind} 0`
          : `${kind} ${of.length}, ${ms(median(of))} / ${ms(Math.max(...of))}`;
      }).join("; "),
    ],
    [
      name,
      "auth requests per token life (federations + docker tokens)",
      `${
        ((p.federations + p.dockerTokens) / lives).toFixed(2)
      } (${p.federations} + ${p.dockerTokens} in ${lives.toFixed(1)} lives)`,
    ],
    [name, "docker tokens per token life", (p.dockerTokens / lives).toFixed(2)],
    [
      name,
      "token refreshes started / docker tokens after the first",
      `${refreshes} / ${p.dockerTokens - 1}`,
    ],
    [name, "failed pulls", String(p.failedPulls)],
  ];
}

const table = (header: string[], rows: string[][]) =>
  [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");

// The reference runs use hour-long tokens (a warm entry must stay fresh while they run); the
// kubelet pattern, short-lived ones.
const refEmu = await startEmulator();
const emu = await startEmulator({ dockerTokenTtl: TTL, tokenTtl: Math.round(TTL * 2 / 3) });
try {
  refEmu.latency(LATENCY);
  emu.latency(LATENCY);
  // Deno's module cache is filled before anything is measured.
  await plugin(refEmu, await newDir());
  const ref = await reference(refEmu);
  const floor = ref.empty + LATENCY.imds + LATENCY.auth + LATENCY.ocir;
  const steady = await kubelet(emu, TTL * LIVES);
  const down = await kubelet(emu, TTL * 3, (dir) => outage(emu, dir));
  const out = [
    `Docker tokens live ${TTL} s (security tokens ${
      Math.round(TTL * 2 / 3)
    } s); a pull every ${INTERVAL} s; latencies IMDS ${LATENCY.imds} ms, auth ${LATENCY.auth} ms, OCIR ${LATENCY.ocir} ms; ${RUNS} reference runs of each kind.`,
    "",
    table(["run (one process, spawn to EOF and exit)", "ms, median"], [
      ["empty Deno program", ms(ref.empty)],
      ["warm: fresh token on disk", ms(ref.warm)],
      ["warm, 95th percentile", ms(ref.warmP95)],
      ["stale token on disk: answered, refresh started", ms(ref.stale)],
      ["cold, spare session key on disk", ms(ref.coldSpare)],
      ["cold, key generated", ms(ref.cold)],
      ["floor: empty start + IMDS + auth + OCIR", ms(floor)],
      ["**cold with spare key / floor**", `**${(ref.coldSpare / floor).toFixed(2)}**`],
    ]),
    "",
    table(["pattern", "measure", "value"], [
      ...report("steady", steady, ref),
      ...report("auth outage", down, ref),
      [
        "auth outage",
        `auth + OCIR token requests during the ${TTL / 2} s outage`,
        String(down.outageRequests),
      ],
    ]),
  ];
  console.log(out.join("\n"));
} finally {
  await Promise.all([emu.close(), refEmu.close()]);
}
