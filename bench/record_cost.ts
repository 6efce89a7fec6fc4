/**
 * The cost of recording one call's outcome, as a warm run pays it: one `recordOutcome` in a fresh
 * process (so its file calls run for the first time, as in the plugin), on the record given,
 * timed alone; prints one JSON line with the milliseconds. Run by bench.ts in a new process each
 * time.
 *
 *   deno run -A bench/record_cost.ts <cache dir> <host>
 *
 * @module
 */

import { recordOutcome } from "../lib/status.ts";

const [dir, host] = Deno.args;
const at = Math.floor(Date.now() / 1000);
const start = performance.now();
await recordOutcome(dir, host, {
  outcome: "cache",
  token: { refreshAt: at + 3000, expiresAt: at + 3300 },
});
console.log(JSON.stringify({ ms: performance.now() - start }));
