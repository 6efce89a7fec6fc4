/**
 * `oke-credential-provider status [--json] [--prometheus FILE]`: the node's record of each
 * registry host's calls (lib/status_record.ts) as text for a person, JSON for tools, and the
 * Prometheus text format for node_exporter's textfile collector. `doctor` prints the text before
 * its live checks.
 *
 * @module
 */

import { writeFileAtomically } from "./cache.ts";
import { describe, PluginError } from "./errors.ts";
import type { Options } from "./options.ts";
import type { Outcome } from "./status.ts";
import { type HostRecord, OUTCOMES, readStatus, type StatusEvent } from "./status_record.ts";

/** The state of the node's token for a host. */
export type TokenState = "valid" | "refresh due" | "expired" | "none";

/** What `status --json` prints for one host. */
export interface HostStatus extends HostRecord {
  tokenState: TokenState;
  /** The newest event. */
  lastOutcome?: StatusEvent;
}

/** What `status --json` prints. */
export interface StatusReport {
  cacheDir: string;
  /** Epoch seconds. */
  now: number;
  hosts: HostStatus[];
}

function tokenState(record: HostRecord, now: number): TokenState {
  if (!record.token) return "none";
  if (now >= record.token.expiresAt) return "expired";
  return now >= record.token.refreshAt ? "refresh due" : "valid";
}

/**
 * The report `status --json` prints, with each host's token state worked out at `now`.
 *
 * @example
 * ```ts
 * const report = statusReport("/var/lib/oke-credential-provider", [], Date.now() / 1000);
 * report.hosts; // []
 * ```
 */
export function statusReport(cacheDir: string, records: HostRecord[], now: number): StatusReport {
  return {
    cacheDir,
    now,
    hosts: records.map((r) => ({
      ...r,
      tokenState: tokenState(r, now),
      lastOutcome: r.events.at(-1),
    })),
  };
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");

/** "in 4m", "12s ago": how far a time is from now, to the unit that matters. */
function relative(seconds: number, now: number): string {
  const d = Math.round(seconds - now);
  const a = Math.abs(d);
  const span = a < 120
    ? `${a}s`
    : a < 7200
    ? `${Math.round(a / 60)}m`
    : a < 172800
    ? `${Math.round(a / 3600)}h`
    : `${Math.round(a / 86400)}d`;
  return d > 0 ? `in ${span}` : `${span} ago`;
}

const when = (seconds: number, now: number) => `${iso(seconds)} (${relative(seconds, now)})`;

const WHAT: Record<Outcome, string> = {
  cache: "answered from cache",
  cold: "answered with a token fetched on the call (cold)",
  failed: "failed",
  refreshed: "background refresh got a new token",
  "refresh-failed": "background refresh failed",
};

/** One event in a line: what, and why for a failure. */
function describeEvent(e: StatusEvent): string {
  const parts = [WHAT[e.outcome]];
  if (e.times && e.times > 1) parts[0] += ` ×${e.times} since ${iso(e.at)}`;
  if (e.error) {
    const host = e.error.host ? ` (${e.error.host})` : "";
    parts.push(`at step ${e.error.step}${host}: ${e.error.message}`);
  }
  if ((e.outcome === "cold" || e.outcome === "refreshed") && e.token) {
    parts.push(`token valid until ${iso(e.token.expiresAt)}`);
  }
  if (e.backoffUntil) parts.push(`next try after ${iso(e.backoffUntil)}`);
  if (e.ms !== undefined) parts.push(`${Math.round(e.ms)} ms`);
  return parts.join(", ");
}

function tokenLine(host: HostStatus, now: number): string {
  const t = host.token;
  switch (host.tokenState) {
    case "none":
      return "none recorded";
    case "expired":
      return `expired ${when(t!.expiresAt, now)}: the next call fetches a new one`;
    case "refresh due":
      return `stale: refresh was due ${when(t!.refreshAt, now)}; valid until ${
        when(t!.expiresAt, now)
      }`;
    case "valid":
      return `valid until ${when(t!.expiresAt, now)}; refresh due ${when(t!.refreshAt, now)}`;
  }
}

function refreshLine(host: HostStatus, now: number): string {
  const last = [...host.events].reverse().find((e) =>
    e.outcome === "refreshed" || e.outcome === "refresh-failed"
  );
  const backoff = host.backoffUntil && host.backoffUntil > now
    ? `backing off until ${when(host.backoffUntil, now)}`
    : "not backing off";
  if (!last) return `no background refresh recorded; ${backoff}`;
  return `last ${last.outcome === "refreshed" ? "succeeded" : "failed"} ${
    when(last.at, now)
  }; ${backoff}`;
}

/**
 * The report as text: per host, the token's state, the last outcome, the last failure with its
 * hint, the refresh and its backoff, counts since boot, then the history, newest first.
 *
 * @example
 * ```ts
 * console.log(statusText(statusReport("/var/lib/oke-credential-provider", [], Date.now() / 1000)));
 * ```
 */
export function statusText(report: StatusReport): string {
  const { now } = report;
  if (report.hosts.length === 0) {
    return `no calls recorded in ${report.cacheDir} (as of ${iso(now)})`;
  }
  const lines = [`calls recorded in ${report.cacheDir} (as of ${iso(now)})`];
  for (const host of report.hosts) {
    const row = (name: string, text: string) => lines.push(`  ${name.padEnd(13)} ${text}`);
    lines.push("", host.host);
    row("token", tokenLine(host, now));
    const last = host.lastOutcome;
    row(
      "last outcome",
      last ? `${when(last.lastAt ?? last.at, now)} ${describeEvent(last)}` : "none",
    );
    const failure = host.lastFailure;
    row(
      "last failure",
      failure ? `${when(failure.at, now)} ${describeEvent(failure)}` : "none",
    );
    if (failure?.error?.hint) row("  hint", failure.error.hint);
    row("refresh", refreshLine(host, now));
    const c = host.counts;
    row(
      "since boot",
      `${c.cache} answered from cache, ${c.cold} cold, ${c.failed} failed; ${c.refreshed} refreshed, ${
        c["refresh-failed"]
      } refreshes failed`,
    );
    row("history", "newest first");
    for (const e of [...host.events].reverse()) {
      lines.push(`    ${iso(e.lastAt ?? e.at)}  ${describeEvent(e)}`);
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format (exposition format 0.0.4), for node_exporter's textfile collector: no
// timestamps (it refuses them), every family with HELP and TYPE, counters ending in _total,
// times as Unix seconds in gauges named *_timestamp_seconds.

const PREFIX = "oke_credential_provider";

const escapeLabel = (v: string) =>
  v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");

interface Sample {
  labels: Record<string, string>;
  value: number;
}

function family(
  name: string,
  type: "counter" | "gauge",
  help: string,
  samples: Sample[],
): string[] {
  if (samples.length === 0) return [];
  const lines = [`# HELP ${PREFIX}_${name} ${help}`, `# TYPE ${PREFIX}_${name} ${type}`];
  for (const { labels, value } of samples) {
    const set = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
    lines.push(`${PREFIX}_${name}{${set}} ${value}`);
  }
  return lines;
}

/**
 * The report in the Prometheus text format, for node_exporter's textfile collector.
 *
 * @example
 * ```ts
 * const text = statusPrometheus(statusReport("/var/lib/oke-credential-provider", [], 0));
 * ```
 */
export function statusPrometheus(report: StatusReport): string {
  const hosts = report.hosts;
  const per = (value: (h: HostStatus) => number | undefined, extra: Record<string, string> = {}) =>
    hosts.flatMap((h) => {
      const v = value(h);
      return v === undefined ? [] : [{ labels: { registry: h.host, ...extra }, value: v }];
    });
  const calls: Outcome[] = ["cache", "cold", "failed"];
  const lines = [
    ...family(
      "calls_total",
      "counter",
      "Kubelet's calls since boot, by registry host and outcome: cache (answered from the cache), cold (token fetched on the call), failed.",
      calls.flatMap((o) => per((h) => h.counts[o], { outcome: o })),
    ),
    ...family(
      "refreshes_total",
      "counter",
      "Background token refreshes since boot, by registry host and result.",
      [
        ...per((h) => h.counts.refreshed, { result: "success" }),
        ...per((h) => h.counts["refresh-failed"], { result: "failure" }),
      ],
    ),
    ...family(
      "last_outcome_timestamp_seconds",
      "gauge",
      "When each outcome last happened for the registry host, Unix seconds.",
      OUTCOMES.flatMap((o) => per((h) => h.lastAt[o], { outcome: o })),
    ),
    ...family(
      "last_call_success",
      "gauge",
      "1 if the registry host's last call was answered, 0 if it failed.",
      per((h) => {
        const last = [...h.events].reverse().find((e) => calls.includes(e.outcome));
        return last && (last.outcome === "failed" ? 0 : 1);
      }),
    ),
    ...family(
      "last_failure_info",
      "gauge",
      "The step and error code of the registry host's last failure (value 1); `status` has the message and hint.",
      hosts.flatMap((h) =>
        h.lastFailure?.error
          ? [{
            labels: {
              registry: h.host,
              step: h.lastFailure.error.step,
              code: h.lastFailure.error.code ?? "",
            },
            value: 1,
          }]
          : []
      ),
    ),
    ...family(
      "token_expiry_timestamp_seconds",
      "gauge",
      "When the node's latest docker token for the registry host expires, Unix seconds.",
      per((h) => h.token?.expiresAt),
    ),
    ...family(
      "token_refresh_timestamp_seconds",
      "gauge",
      "When the plugin stops reusing the node's latest docker token for the registry host, Unix seconds.",
      per((h) => h.token?.refreshAt),
    ),
    ...family(
      "refresh_backoff_until_timestamp_seconds",
      "gauge",
      "No background refresh for the registry host before this time, Unix seconds; 0 when not backing off.",
      per((h) => h.backoffUntil && h.backoffUntil > report.now ? h.backoffUntil : 0),
    ),
  ];
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/**
 * Runs `status`: prints the text (or with `--json`, the JSON) and, with `--prometheus FILE`,
 * replaces FILE atomically (0644, for the collector) with the metrics instead of printing text.
 * Returns the exit status.
 *
 * @example
 * ```ts
 * import { parseOptions } from "./options.ts";
 * Deno.exit(await status(await parseOptions(["status", "--json"])));
 * ```
 */
export async function status(
  options: Options,
  print: (text: string) => void | Promise<void> = (text) => console.log(text),
): Promise<number> {
  let records: HostRecord[];
  try {
    records = await readStatus(options.cacheDir);
  } catch (e) {
    throw new PluginError("cache", "BAD_INPUT", `cannot read ${options.cacheDir}: ${describe(e)}`, {
      hint: "run status as the user kubelet runs the plugin as (root), with the same --cache-dir",
      cause: e,
    });
  }
  const report = statusReport(options.cacheDir, records, Date.now() / 1000);
  if (options.prometheus !== undefined) {
    try {
      await writeFileAtomically(options.prometheus, statusPrometheus(report), 0o644);
    } catch (e) {
      throw new PluginError(
        "status",
        "BAD_INPUT",
        // A compiled binary's own message would advise a flag it cannot take.
        `cannot write ${options.prometheus}: ${
          e instanceof Deno.errors.NotCapable
            ? "outside the paths this binary may write"
            : describe(e)
        }`,
        {
          hint:
            "give a file in node_exporter's --collector.textfile.directory: /var/lib/node_exporter/textfile_collector or /var/lib/prometheus/node-exporter",
          cause: e,
        },
      );
    }
  }
  if (options.json) await print(JSON.stringify(report, null, 2));
  else if (options.prometheus === undefined) await print(statusText(report));
  return 0;
}
