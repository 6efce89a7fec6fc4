/**
 * Issue 13 on the emulator, with real plugin processes: after a denied call, a cold call, a warm
 * call and a failed refresh, `status` (text and JSON), `status --prometheus` and `doctor` report
 * each with its step, hint and times, and no secret is in any output or record file; a record
 * that cannot be written never fails a call; real calls keep the record under its bound.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { dockerTokenPath } from "../lib/cache.ts";
import { type HostRecord, MAX_EVENTS, MAX_RECORD_BYTES, statusPath } from "../lib/status_record.ts";
import type { StatusReport } from "../lib/status_report.ts";
import type { Emulator } from "./emulator/mod.ts";
import { emulatorTest } from "./support/emulator.ts";
import { appImage, SecretWatch } from "./support/fault_scenarios.ts";
import {
  kubeletRequest,
  makeCacheDir,
  makeStale,
  type PluginRun,
  runPlugin,
  settled,
} from "./support/plugin_process.ts";

const HOST = "iad.ocir.io";

/** What a test gets: the emulator, a fresh cache directory, and one plugin call as kubelet's. */
interface Rig {
  emu: Emulator;
  dir: string;
  call(env?: Record<string, string>): Promise<PluginRun>;
}

function statusTest(name: string, fn: (t: Deno.TestContext, rig: Rig) => Promise<void>) {
  emulatorTest(name, async (t, { emu }) => {
    const dir = await makeCacheDir("status-");
    const call = (env: Record<string, string> = {}) =>
      runPlugin({
        stdin: kubeletRequest(appImage(emu)),
        env: { ...emu.env, ...env },
        args: ["--cache-dir", dir, "--timeout", "10"],
        killAfterMs: 30_000,
      });
    try {
      await fn(t, { emu, dir, call });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

statusTest(
  "status on the emulator: denied, cold, warm and a failed refresh, each as it happened",
  async (t, rig) => {
    const { emu, dir } = rig;
    const watch = new SecretWatch();
    const call = async () => {
      const before = Date.now() / 1000;
      const run = await rig.call();
      await watch.harvest(run, dir);
      return { run, before, after: Date.now() / 1000 };
    };
    const command = async (...args: string[]): Promise<PluginRun> => {
      const run = await runPlugin({ stdin: "", env: emu.env, args: [...args, "--cache-dir", dir] });
      assert.equal(run.stderr, "", `${args.join(" ")}: nothing on stderr`);
      assert.equal(run.code, 0, run.stdout);
      return run;
    };
    const json = async () => JSON.parse((await command("status", "--json")).stdout) as StatusReport;
    const host = (report: StatusReport) => report.hosts.find((h) => h.host === HOST)!;
    const between = (t: number, span: { before: number; after: number }) =>
      assert.ok(t >= span.before - 0.01 && t <= span.after + 0.01, `${t} in the call's span`);
    await watch.addIdentity(emu);
    await t.step("a denied call: failed at OCIR token, with the policy hint", async () => {
      emu.fault("ocir", { status: [403, 403] });
      const denied = await call();
      emu.clearFaults();
      assert.equal(denied.run.code, 1);
      const h = host(await json());
      assert.deepEqual(h.counts, {
        cache: 0,
        cold: 0,
        failed: 1,
        refreshed: 0,
        "refresh-failed": 0,
      });
      assert.equal(h.lastOutcome?.outcome, "failed");
      assert.equal(h.lastFailure?.error?.step, "OCIR token");
      assert.equal(h.lastFailure?.error?.code, "HTTP_STATUS");
      assert.match(h.lastFailure?.error?.message ?? "", /HTTP 403 NotAuthorizedOrNotFound/);
      assert.match(h.lastFailure?.error?.hint ?? "", /Allow dynamic-group <group> to read repos/);
      between(h.lastFailure!.at, denied);
      assert.equal(h.tokenState, "none");
    });

    let coldSpan: { before: number; after: number };
    await t.step("a cold call: the token's times as cached", async () => {
      const cold = await call();
      coldSpan = cold;
      assert.equal(cold.run.code, 0, cold.run.stderr);
      const cached = JSON.parse(await Deno.readTextFile(dockerTokenPath(dir, HOST)));
      const h = host(await json());
      assert.equal(h.counts.cold, 1);
      assert.equal(h.lastOutcome?.outcome, "cold");
      between(h.lastOutcome!.at, cold);
      assert.equal(h.token?.expiresAt, cached.expiresAt);
      assert.equal(h.token?.refreshAt, cached.refreshAt);
      assert.equal(h.tokenState, "valid");
      assert.ok(h.lastOutcome!.ms! > 0 && h.lastOutcome!.ms! < 30_000);
    });

    await t.step("a warm call: answered from cache, nothing sent", async () => {
      const mark = emu.requests.length;
      const warm = await call();
      assert.equal(warm.run.code, 0, warm.run.stderr);
      assert.deepEqual(emu.requests.slice(mark), []);
      const h = host(await json());
      assert.equal(h.counts.cache, 1);
      assert.equal(h.lastOutcome?.outcome, "cache");
      between(h.lastOutcome!.at, warm);
      assert.equal(h.lastFailure?.error?.step, "OCIR token", "the last failure stays");
    });

    await t.step(
      "a failed refresh: a stale token answered at once, its background refresh refused",
      async () => {
        // The cached token falls due (still valid); OCIR refuses the background refresh.
        await makeStale(dir, HOST);
        emu.fault("ocir", { status: [403, 403] });
        const stale = await call();
        await settled(dir);
        const after = Date.now() / 1000;
        emu.clearFaults();
        assert.equal(stale.run.code, 0, stale.run.stderr);
        const h = host(await json());
        assert.deepEqual(h.counts, {
          cache: 2,
          cold: 1,
          failed: 1,
          refreshed: 0,
          "refresh-failed": 1,
        });
        assert.equal(h.lastFailure?.outcome, "refresh-failed");
        assert.equal(h.lastFailure?.error?.step, "OCIR token");
        assert.match(h.lastFailure?.error?.message ?? "", /HTTP 403/);
        assert.ok(h.lastFailure?.error?.hint, "with a hint");
        between(h.lastFailure!.at, { before: stale.before, after });
        assert.ok(h.backoffUntil! > after, "backing off");
        assert.equal(h.tokenState, "refresh due");
        assert.deepEqual(h.events.map((e) => e.outcome), [
          "failed",
          "cold",
          "cache",
          "refresh-failed",
        ]);
        assert.equal(h.events[2].times, 2, "the stale answer folds with the warm one");
        between(h.events[1].at, coldSpan);
      },
    );

    await t.step("status as text says the same, line by line", async () => {
      const text = (await command("status")).stdout;
      assert.match(text, /^iad\.ocir\.io$/m);
      assert.match(
        text,
        /^ {2}token +stale: refresh was due \S+Z \(\d+s ago\); valid until \S+Z \(in \d+m\)$/m,
      );
      assert.match(
        text,
        /^ {2}last outcome +\S+Z \(\d+s ago\) background refresh failed, at step OCIR token \(iad\.ocir\.io\): HTTP 403/m,
      );
      assert.match(
        text,
        /^ {2}last failure +\S+Z \(\d+s ago\) background refresh failed, at step OCIR token/m,
      );
      assert.match(text, /^ {2}refresh +last failed .*; backing off until \S+Z \(in \d+/m);
      assert.match(text, /^ {4}hint +\S/m);
      assert.match(
        text,
        /^ {2}since boot +2 answered from cache, 1 cold, 1 failed; 0 refreshed, 1 refreshes failed$/m,
      );
      const history = text.split("\n").filter((l) => /^ {4}\d{4}-/.test(l));
      assert.equal(history.length, 4);
      assert.match(history[0], /background refresh failed, at step OCIR token.*next try after/);
      assert.match(history[1], /answered from cache ×2 since \S+Z, \d+ ms$/);
      assert.match(
        history[2],
        /answered with a token fetched on the call \(cold\), token valid until/,
      );
      assert.match(
        history[3],
        /failed, at step OCIR token \(iad\.ocir\.io\): HTTP 403 NotAuthorizedOrNotFound/,
      );
      watch.assertClean(text, "status");
    });

    await t.step("status --prometheus and doctor: the same figures, no secret", async () => {
      const out = await makeCacheDir("prom-");
      try {
        await command("status", "--prometheus", `${out}/oke.prom`);
        const prom = await Deno.readTextFile(`${out}/oke.prom`);
        const families = new Map(
          (parsePrometheus(prom) as {
            name: string;
            metrics: { value: string; labels: Record<string, string> }[];
          }[])
            .map((f) => [f.name, f.metrics]),
        );
        const calls = families.get("oke_credential_provider_calls_total")!;
        const value = (outcome: string) => calls.find((m) => m.labels.outcome === outcome)?.value;
        assert.deepEqual([value("cache"), value("cold"), value("failed")], ["2", "1", "1"]);
        assert.equal(families.get("oke_credential_provider_last_call_success")![0].value, "1");
        const refreshes = families.get("oke_credential_provider_refreshes_total")!;
        assert.equal(refreshes.find((m) => m.labels.result === "failure")?.value, "1");
        assert.equal(
          families.get("oke_credential_provider_last_failure_info")![0].labels.step,
          "OCIR token",
        );
        watch.assertClean(prom, "status --prometheus");

        const doctor = (await command("doctor", "--timeout", "10")).stdout.split("\n");
        const now = doctor.indexOf("what happens now (every step, run on this node):");
        assert.ok(now > 0, doctor.join("\n"));
        const history = doctor.slice(0, now).join("\n");
        assert.match(
          history,
          /^ {4}last failure +\S+Z \(\d+s ago\) background refresh failed, at step OCIR token/m,
        );
        assert.match(history, /^ {4}since boot +2 answered from cache, 1 cold, 1 failed/m);
        assert.match(doctor[now + 1], /^✓ IMDS/);
        watch.assertClean(doctor.join("\n"), "doctor");
        // And the record files themselves.
        for (const entry of Deno.readDirSync(dir)) {
          if (entry.name.startsWith("status-")) {
            watch.assertClean(await Deno.readTextFile(`${dir}/${entry.name}`), entry.name);
          }
        }
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    });
  },
);

statusTest(
  "status on the emulator: an unwritable record fails no call; calls keep it bounded",
  async (t, { emu, dir, call }) => {
    const record = async (): Promise<HostRecord> =>
      JSON.parse(await Deno.readTextFile(statusPath(dir, HOST)));
    await t.step(
      "the record's path is a directory: cold and warm calls answer, silently",
      async () => {
        await Deno.mkdir(statusPath(dir, HOST));
        for (const kind of ["cold", "warm"]) {
          const run = await call();
          assert.equal(run.code, 0, `${kind}: ${run.stderr}`);
          assert.equal(run.stderr, "", kind);
          assert.ok(run.response?.auth[HOST].password, kind);
        }
        await Deno.remove(statusPath(dir, HOST));
      },
    );

    await t.step("OKE_CREDENTIAL_PROVIDER_RECORD=false records nothing", async () => {
      const run = await call({ OKE_CREDENTIAL_PROVIDER_RECORD: "false" });
      assert.equal(run.code, 0, run.stderr);
      await assert.rejects(Deno.stat(statusPath(dir, HOST)), Deno.errors.NotFound);
    });

    await t.step(
      `${MAX_EVENTS + 7} calls that do not fold: rotated, bounded, all counted`,
      async () => {
        const calls = MAX_EVENTS + 7;
        for (let i = 0; i < calls; i++) {
          const kind = i % 3;
          // cold (token removed), warm, failed (token removed, IMDS refusing)
          if (kind !== 1) await Deno.remove(dockerTokenPath(dir, HOST)).catch(() => {});
          if (kind === 2) emu.fault("imds", { status: [403, 403, 403, 403] });
          const run = await call();
          emu.clearFaults();
          assert.equal(run.code, kind === 2 ? 1 : 0, run.stderr);
          assert.ok((await Deno.stat(statusPath(dir, HOST))).size <= MAX_RECORD_BYTES);
        }
        const r = await record();
        assert.equal(r.events.length, MAX_EVENTS);
        assert.equal(r.counts.cold + r.counts.cache + r.counts.failed, calls);
        assert.equal(r.counts.failed, Math.floor(calls / 3));
        assert.equal(r.lastFailure?.error?.step, "IMDS");
        const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
          n.includes("status")
        ).sort();
        assert.deepEqual(names, [`status-${HOST}.hits`, `status-${HOST}.json`], "no temp file");
      },
    );
  },
);
