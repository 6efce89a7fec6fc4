/**
 * Issue 13, the record and its reports: lib/status.ts keeps each registry host's outcomes bounded,
 * 0600, whole under concurrent writers and never failing its caller; lib/status_report.ts renders
 * them as text, JSON and the Prometheus text format (parsed here with a real parser), and
 * `status --prometheus FILE` replaces FILE atomically.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { hitsPath, MAX_HITS_BYTES, type OutcomeReport, recordOutcome } from "../lib/status.ts";
import {
  type HostRecord,
  MAX_EVENTS,
  MAX_RECORD_BYTES,
  readStatus,
  statusPath,
} from "../lib/status_record.ts";
import { statusPrometheus, statusReport, statusText } from "../lib/status_report.ts";
import { makeCacheDir, runPlugin } from "./support/plugin_process.ts";

const HOST = "iad.ocir.io";
const T0 = 1_800_000_000;
const token = (at: number) => ({ obtainedAt: at, refreshAt: at + 3300, expiresAt: at + 3600 });
const denied: OutcomeReport = {
  outcome: "failed",
  error: {
    step: "OCIR token",
    code: "HTTP_STATUS",
    host: HOST,
    message: "HTTP 403 FORBIDDEN",
    hint: "add a policy: Allow dynamic-group <nodes> to read repos in tenancy",
  },
  ms: 640,
};
const mode = async (path: string) => (await Deno.stat(path)).mode! & 0o777;
const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

async function only(dir: string, bootedAt?: number): Promise<HostRecord> {
  const records = await readStatus(dir, bootedAt);
  assert.equal(records.length, 1);
  return records[0];
}

/** A family of the parsed metrics, by name. */
interface Family {
  name: string;
  help: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string>; timestamp_ms?: string }[];
}

/** Parses the exposition and checks the conventions node_exporter's textfile collector needs. */
function parseMetrics(text: string): Map<string, Family> {
  const families: Family[] = parsePrometheus(text);
  for (const f of families) {
    assert.match(f.name, /^oke_credential_provider_[a-z_]+$/);
    assert.ok(f.help.length > 10, `${f.name} has HELP`);
    assert.ok(["COUNTER", "GAUGE"].includes(f.type), `${f.name} has a TYPE`);
    assert.equal(f.type === "COUNTER", f.name.endsWith("_total"), `${f.name}: _total iff counter`);
    if (f.name.includes("timestamp")) assert.match(f.name, /_timestamp_seconds$/);
    for (const m of f.metrics) {
      assert.equal(m.timestamp_ms, undefined, `${f.name}: no sample timestamps`);
      assert.ok(Number.isFinite(Number(m.value)), `${f.name} ${m.value}`);
    }
  }
  // Every line is a comment or a sample; HELP and TYPE come once, before the family's samples.
  for (const line of text.trimEnd().split("\n")) {
    assert.match(line, /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+\{[^}]*\} -?[0-9.e+]+)$/, line);
  }
  assert.ok(text.endsWith("\n"));
  return new Map(families.map((f) => [f.name, f]));
}

/** A test with a fresh directory (one the plugin under test may use), removed after. */
function inDir(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test(name, async () => {
    const dir = await makeCacheDir("st-");
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

const sample = (f: Family | undefined, labels: Record<string, string>) =>
  f?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value;

inDir(
  "record: each outcome counted, answers from the cache with one token folded, 0600",
  async (dir) => {
    await recordOutcome(dir, HOST, denied, { now: T0, bootedAt: 1 });
    await recordOutcome(dir, HOST, { outcome: "cold", token: token(T0 + 60), ms: 700 }, {
      now: T0 + 60,
      bootedAt: 1,
    });
    for (let i = 1; i <= 3; i++) {
      await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0 + 60), ms: 19 }, {
        now: T0 + 60 + i * 10,
        bootedAt: 1,
      });
    }
    const r = await only(dir, 1);
    assert.equal(await mode(statusPath(dir, HOST)), 0o600);
    assert.deepEqual(r.counts, { cache: 3, cold: 1, failed: 1, refreshed: 0, "refresh-failed": 0 });
    assert.deepEqual(r.events.map((e) => [e.outcome, e.at, e.times, e.lastAt]), [
      ["failed", T0, undefined, undefined],
      ["cold", T0 + 60, undefined, undefined],
      ["cache", T0 + 70, 3, T0 + 90],
    ]);
    assert.deepEqual(r.token, token(T0 + 60));
    assert.equal(r.lastFailure?.error?.step, "OCIR token");
    assert.deepEqual(r.lastAt, { failed: T0, cold: T0 + 60, cache: T0 + 90 });
    assert.deepEqual(names(dir), [`status-${HOST}.hits`, `status-${HOST}.json`]);
  },
);

inDir("record: a refresh that fails sets the backoff, one that succeeds clears it", async (dir) => {
  await recordOutcome(dir, HOST, {
    outcome: "refresh-failed",
    error: { step: "federation", code: "NETWORK", message: "connection refused" },
    backoffUntil: T0 + 120,
  }, { now: T0, bootedAt: 1 });
  assert.equal((await only(dir, 1)).backoffUntil, T0 + 120);
  await recordOutcome(dir, HOST, { outcome: "refreshed", token: token(T0 + 200) }, {
    now: T0 + 200,
    bootedAt: 1,
  });
  const r = await only(dir, 1);
  assert.equal(r.backoffUntil, undefined);
  assert.deepEqual(r.token, token(T0 + 200));
  assert.equal(r.lastFailure?.outcome, "refresh-failed");
});

inDir("record: counts start again at a new boot; the history stays", async (dir) => {
  await recordOutcome(dir, HOST, denied, { now: T0, bootedAt: 1 });
  await recordOutcome(dir, HOST, { outcome: "cold", token: token(T0) }, {
    now: T0 + 1,
    bootedAt: 86400,
  });
  const r = await only(dir, 86400);
  assert.equal(r.bootedAt, 86400);
  assert.deepEqual(r.counts, { cache: 0, cold: 1, failed: 0, refreshed: 0, "refresh-failed": 0 });
  assert.equal(r.events.length, 2);
  assert.equal(r.lastFailure?.at, T0);
  // A boot time moved by less than two minutes (the clock stepped by NTP) is the same boot.
  await recordOutcome(dir, HOST, denied, { now: T0 + 2, bootedAt: 86400 + 119 });
  assert.equal((await only(dir, 86400 + 119)).counts.failed, 1);
  // Without a boot given, the node's own (from its uptime): the same for two calls.
  await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0) });
  await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0) });
  const node = await only(dir);
  assert.ok(Math.abs(node.bootedAt - (Date.now() / 1000 - Deno.osUptime())) < 5);
  assert.deepEqual([node.counts.cache, node.counts.failed], [2, 0]);
});

inDir(
  "record: stays under its bound after 10 000 calls, the worst messages included",
  async (dir) => {
    // Messages and hints as long and as costly to encode as they come: 3-byte characters, quotes.
    const long = `${'é€"\\'.repeat(400)} end`;
    let sizeMax = 0;
    for (let i = 0; i < 10_000; i++) {
      const kind = i % 4;
      await recordOutcome(
        dir,
        HOST,
        kind === 0
          ? { outcome: i % 8 ? "cache" : "cold", token: token(T0 + i) } // new tokens: no folding
          : kind === 1
          ? { outcome: "failed", error: { step: "federation", message: long, hint: long } }
          : kind === 2
          ? {
            outcome: "refresh-failed",
            error: { step: "IMDS", message: long, hint: long },
            backoffUntil: T0 + i,
          }
          : {
            outcome: "failed",
            error: {
              step: "OCIR token",
              code: "HTTP_STATUS",
              host: HOST,
              message: long,
              hint: long,
            },
            ms: i,
          },
        { now: T0 + i, bootedAt: 1 },
      );
      if (i % 500 === 499) {
        sizeMax = Math.max(sizeMax, (await Deno.stat(statusPath(dir, HOST))).size);
      }
    }
    const r = await only(dir, 1);
    assert.equal(r.events.length, MAX_EVENTS);
    assert.deepEqual(r.counts, {
      cache: 1250,
      cold: 1250,
      failed: 5000,
      refreshed: 0,
      "refresh-failed": 2500,
    });
    assert.equal(r.events.at(-1)?.at, T0 + 9999);
    assert.ok(r.lastFailure?.error?.message.endsWith("…"), "long messages are cut");
    assert.ok(sizeMax > MAX_RECORD_BYTES / 2, `the worst case was reached: ${sizeMax} bytes`);
    assert.ok(sizeMax <= MAX_RECORD_BYTES, `${sizeMax} > ${MAX_RECORD_BYTES}`);
    assert.deepEqual(names(dir), [`status-${HOST}.hits`, `status-${HOST}.json`]);

    // Then 10 000 answers from the cache in a row, the warm steady state: the journal folds.
    let hitsMax = 0;
    for (let i = 0; i < 10_000; i++) {
      await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0), ms: 19 }, {
        now: T0 + 10_000 + i,
        bootedAt: 1,
      });
      hitsMax = Math.max(hitsMax, Deno.statSync(hitsPath(dir, HOST)).size);
      sizeMax = Math.max(sizeMax, Deno.statSync(statusPath(dir, HOST)).size);
    }
    const warm = await only(dir, 1);
    assert.equal(warm.counts.cache, 1250 + 10_000);
    assert.equal(warm.events.length, MAX_EVENTS);
    assert.deepEqual(
      [warm.events.at(-1)?.outcome, warm.events.at(-1)?.times, warm.events.at(-1)?.lastAt],
      ["cache", 10_000, T0 + 19_999],
      "one folded event",
    );
    assert.ok(hitsMax > MAX_HITS_BYTES / 2 && hitsMax < MAX_HITS_BYTES + 200, `${hitsMax}`);
    assert.ok(sizeMax <= MAX_RECORD_BYTES, `${sizeMax} > ${MAX_RECORD_BYTES}`);
    assert.deepEqual(names(dir), [`status-${HOST}.hits`, `status-${HOST}.json`]);
  },
);

Deno.test("record: never throws, and never follows a planted symlink", async () => {
  const root = await Deno.makeTempDir();
  try {
    // No directory: nothing recorded, nothing created.
    await recordOutcome(`${root}/missing`, HOST, denied);
    assert.deepEqual([...Deno.readDirSync(root)], []);
    // The record's path is a directory: the rename fails, quietly, and leaves no temp file.
    const dir = `${root}/cache`;
    await Deno.mkdir(dir, { mode: 0o700 });
    await Deno.mkdir(statusPath(dir, HOST));
    await recordOutcome(dir, HOST, denied);
    assert.deepEqual(names(dir), [`status-${HOST}.json`]);
    await Deno.remove(statusPath(dir, HOST));
    // A symlink at the record and at its temp name: replaced, the targets untouched.
    await Deno.writeTextFile(`${root}/target`, "precious");
    await Deno.symlink(`${root}/target`, statusPath(dir, HOST));
    await Deno.symlink(`${root}/target`, `${statusPath(dir, HOST)}.part`);
    await recordOutcome(dir, HOST, denied);
    assert.equal(await Deno.readTextFile(`${root}/target`), "precious");
    assert.ok((await Deno.lstat(statusPath(dir, HOST))).isFile);
    assert.equal((await only(dir)).counts.failed, 1);
    // A symlink at the journal, to a file or to nothing: not written through, nothing created.
    for (const target of [`${root}/target`, `${root}/nothing`]) {
      await Deno.remove(hitsPath(dir, HOST));
      await Deno.symlink(target, hitsPath(dir, HOST));
      await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0) });
      assert.ok((await Deno.lstat(hitsPath(dir, HOST))).isFile, "replaced by a file");
    }
    assert.equal(await Deno.readTextFile(`${root}/target`), "precious");
    await assert.rejects(Deno.lstat(`${root}/nothing`), Deno.errors.NotFound);
    assert.equal((await only(dir)).counts.cache, 2);
    // A corrupt record starts again.
    await Deno.writeTextFile(statusPath(dir, HOST), '{"host": "iad.ocir.io", "ev');
    await recordOutcome(dir, HOST, denied);
    assert.equal((await only(dir)).counts.failed, 1);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

inDir("record: nothing goes into, nor is read from, a directory others may write", async (dir) => {
  await Deno.chmod(dir, 0o777);
  await recordOutcome(dir, HOST, denied);
  assert.deepEqual(names(dir), []);
  await Deno.chmod(dir, 0o700);
  await recordOutcome(dir, HOST, denied);
  await Deno.chmod(dir, 0o770);
  await assert.rejects(readStatus(dir), /is writable by other users.*not to be trusted/);
  const run = await cli(["status", "--cache-dir", dir]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /step=cache msg="cannot read .*is writable by other users/);
});

inDir("record: secrets in a message are redacted, the text is one bounded line", async (dir) => {
  const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJub2RlIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
  await recordOutcome(dir, HOST, {
    outcome: "failed",
    error: { step: "OCIR token", message: `HTTP 401 token ${jwt}\nrefused \u202e`, hint: "x" },
  });
  const text = await Deno.readTextFile(statusPath(dir, HOST));
  assert.ok(!text.includes(jwt.slice(0, 20)));
  assert.equal(
    (await only(dir)).lastFailure?.error?.message,
    "HTTP 401 token [JWT redacted] refused ?",
  );
});

Deno.test("record: concurrent processes lose no count and leave a whole file", async () => {
  const dir = await Deno.makeTempDir();
  const [processes, each] = [6, 40];
  const script = `
    import { recordOutcome } from ${
    JSON.stringify(new URL("../lib/status.ts", import.meta.url).href)
  };
    for (let i = 0; i < ${each}; i++) {
      await recordOutcome(${
    JSON.stringify(dir)
  }, "${HOST}", { outcome: i % 2 ? "cache" : "cold", token: { refreshAt: i, expiresAt: i } });
    }`;
  try {
    const runs = await Promise.all(
      Array.from(
        { length: processes },
        () =>
          new Deno.Command(Deno.execPath(), { args: ["eval", script], stderr: "piped" }).output(),
      ),
    );
    for (const run of runs) assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    const r = await only(dir);
    assert.equal(r.counts.cache + r.counts.cold, processes * each);
    assert.deepEqual(names(dir), [`status-${HOST}.hits`, `status-${HOST}.json`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reports: text, JSON and Prometheus say the same figures", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const now = T0 + 600;
    await recordOutcome(dir, HOST, denied, { now: T0, bootedAt: 1 });
    await recordOutcome(dir, HOST, { outcome: "cold", token: token(T0 + 60), ms: 700 }, {
      now: T0 + 60,
      bootedAt: 1,
    });
    await recordOutcome(dir, HOST, { outcome: "cache", token: token(T0 + 60) }, {
      now: T0 + 90,
      bootedAt: 1,
    });
    await recordOutcome(dir, HOST, {
      outcome: "refresh-failed",
      error: { step: "federation", code: "NETWORK", message: "connection refused" },
      backoffUntil: now + 240,
    }, { now: T0 + 100, bootedAt: 1 });
    await recordOutcome(dir, "fra.ocir.io", { outcome: "cache", token: token(T0 - 3500) }, {
      now: T0,
      bootedAt: 1,
    });
    await recordOutcome(dir, "syd.ocir.io", { outcome: "cache", token: token(T0 - 2800) }, {
      now: T0,
      bootedAt: 1,
    });
    const report = statusReport(dir, await readStatus(dir, 1), now);
    assert.deepEqual(report.hosts.map((h) => [h.host, h.tokenState]), [
      ["fra.ocir.io", "expired"],
      [HOST, "valid"],
      ["syd.ocir.io", "refresh due"],
    ]);
    const json = JSON.parse(JSON.stringify(report));
    assert.equal(json.hosts[1].lastOutcome.outcome, "refresh-failed");
    assert.equal(json.hosts[1].lastFailure.error.step, "federation");

    const text = statusText(report);
    assert.match(text, /^iad\.ocir\.io$/m);
    assert.match(
      text,
      /^ {2}token +valid until 2027-01-15T09:01:00Z \(in 51m\); refresh due 2027-01-15T08:56:00Z \(in 46m\)$/m,
    );
    assert.match(
      text,
      /^ {2}last failure +2027-01-15T08:01:40Z \(8m ago\) background refresh failed, at step federation: connection refused/m,
    );
    assert.match(
      text,
      /^ {2}refresh +last failed .*; backing off until 2027-01-15T08:14:00Z \(in 4m\)$/m,
    );
    assert.match(
      text,
      /^ {2}since boot +1 answered from cache, 1 cold, 1 failed; 0 refreshed, 1 refreshes failed$/m,
    );
    assert.match(
      text,
      /^ {4}2027-01-15T08:00:00Z {2}failed, at step OCIR token \(iad\.ocir\.io\): HTTP 403 FORBIDDEN, 640 ms$/m,
    );
    assert.match(text, /^ {2}token +expired 2027-01-15T08:01:40Z \(8m ago\)/m);
    assert.match(
      text,
      /^ {2}token +stale: refresh was due 2027-01-15T08:08:20Z \(100s ago\); valid until 2027-01-15T08:13:20Z \(in 3m\)$/m,
    );

    const metrics = parseMetrics(statusPrometheus(report));
    const calls = metrics.get("oke_credential_provider_calls_total");
    assert.equal(sample(calls, { registry: HOST, outcome: "cache" }), "1");
    assert.equal(sample(calls, { registry: HOST, outcome: "cold" }), "1");
    assert.equal(sample(calls, { registry: HOST, outcome: "failed" }), "1");
    const refreshes = metrics.get("oke_credential_provider_refreshes_total");
    assert.equal(sample(refreshes, { registry: HOST, result: "failure" }), "1");
    assert.equal(sample(refreshes, { registry: HOST, result: "success" }), "0");
    assert.equal(
      sample(metrics.get("oke_credential_provider_token_expiry_timestamp_seconds"), {
        registry: HOST,
      }),
      String(T0 + 60 + 3600),
    );
    assert.equal(
      sample(metrics.get("oke_credential_provider_refresh_backoff_until_timestamp_seconds"), {
        registry: HOST,
      }),
      String(now + 240),
    );
    assert.equal(
      sample(metrics.get("oke_credential_provider_last_failure_info"), { registry: HOST }) &&
        metrics.get("oke_credential_provider_last_failure_info")!.metrics.find((m) =>
          m.labels?.registry === HOST
        )?.labels?.step,
      "federation",
    );
    assert.equal(
      sample(metrics.get("oke_credential_provider_last_call_success"), { registry: HOST }),
      "1",
    );
    assert.equal(
      sample(metrics.get("oke_credential_provider_last_outcome_timestamp_seconds"), {
        registry: HOST,
        outcome: "failed",
      }),
      String(T0),
    );
    // Nothing recorded: nothing to say, and still a valid (empty) exposition.
    assert.equal(statusPrometheus(statusReport(dir, [], now)), "");
    assert.match(statusText(statusReport(dir, [], now)), /^no calls recorded in /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs the plugin with `args` and nothing on stdin, as an operator runs the binary. */
const cli = (args: string[]) => runPlugin({ stdin: "", args });

Deno.test({
  name: "status --prometheus FILE replaces FILE atomically: a reader never sees a torn file",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await makeCacheDir("st-");
    const out = await makeCacheDir("st-");
    const file = `${out}/oke.prom`;
    try {
      for (let i = 0; i < 30; i++) {
        await recordOutcome(dir, `r${i}.ocir.io`, { outcome: "cold", token: token(T0 + i) });
      }
      await Deno.writeTextFile(file, "# an older version\n");
      // Held open: a file replaced by a rename stays readable, whole, through this handle, and
      // its inode number cannot be reused meanwhile.
      const held = await Deno.open(file);
      const before = (await held.stat()).ino;
      let reads = 0;
      let writing = true;
      // Reads as fast as it can while the writers run: each read is the old file or a whole new one.
      const reader = (async () => {
        while (writing) {
          const text = await Deno.readTextFile(file);
          reads++;
          if (text !== "# an older version\n") {
            const calls = parseMetrics(text).get("oke_credential_provider_calls_total")!;
            assert.equal(calls.metrics.length, 30 * 3, "a whole file");
          }
          await new Promise((r) => setTimeout(r, 0));
        }
      })();
      for (let round = 0; round < 4; round++) {
        const runs = await Promise.all(
          [0, 1].map(() => cli(["status", "--cache-dir", dir, "--prometheus", file])),
        );
        for (const run of runs) {
          assert.equal(run.code, 0, run.stderr);
          assert.equal(run.stdout, "", "--prometheus alone prints nothing");
        }
      }
      writing = false;
      await reader;
      assert.ok(reads > 10, `the reader read ${reads} times`);
      const after = await Deno.stat(file);
      assert.notEqual(after.ino, before, "renamed over, not rewritten in place");
      const buffer = new Uint8Array(100);
      const n = await held.read(buffer);
      held.close();
      assert.equal(new TextDecoder().decode(buffer.subarray(0, n!)), "# an older version\n");
      assert.equal(after.mode! & 0o777, 0o644, "readable by node_exporter");
      assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["oke.prom"]);
      // A directory it cannot write to: one line naming the step, exit 1, nothing printed.
      const bad = await cli([
        "status",
        "--cache-dir",
        dir,
        "--prometheus",
        `${out}/no/such/x.prom`,
      ]);
      assert.equal(bad.code, 1);
      assert.equal(bad.stdout, "");
      assert.match(
        bad.stderr,
        /^oke-credential-provider level=error step=status msg="cannot write .*no\/such\/x\.prom: .*"\n$/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(out, { recursive: true });
    }
  },
});

inDir("status and status --json, as commands; flags belong to status", async (dir) => {
  const empty = await cli(["status", "--cache-dir", `${dir}/none`]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /^no calls recorded in /);
  await recordOutcome(dir, HOST, denied);
  const text = await cli(["status", "--cache-dir", dir]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    /last failure .* failed, at step OCIR token \(iad\.ocir\.io\): HTTP 403 FORBIDDEN/,
  );
  assert.match(text.stdout, /hint +add a policy/);
  const json = await cli(["status", "--json", "--cache-dir", dir]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(report.hosts[0].host, HOST);
  assert.equal(report.hosts[0].counts.failed, 1);
  for (
    const args of [["--json"], ["doctor", "--prometheus", "x"], ["status", "--prometheus", ""]]
  ) {
    const run = await cli(args);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /step=arguments msg="--(json|prometheus) is/);
  }
});
