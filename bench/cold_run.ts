/**
 * One invocation of the real command (lib/plugin.ts `run`, as mod.ts calls it), then the timings
 * the product itself recorded: the `performance` marks and measures of lib/plugin.ts (cache
 * missed), lib/federation.ts (session key) and lib/http.ts (one measure per answered call, named
 * by its step). bench.ts runs it as a process with the emulator's environment and a request on
 * stdin; it prints one JSON line: the exit status, when the runtime started (epoch ms) and the
 * entries, in ms since then.
 *
 *   deno run <release permissions> bench/cold_run.ts --cache-dir DIR < request.json
 *
 * @module
 */

import { run } from "../lib/plugin.ts";

const status = await run(Deno.args, {
  stdin: Deno.stdin,
  stdout: () => {}, // the response holds a token: not printed
  stderr: (line) => console.error(line),
});
const entries = performance.getEntries().map(({ name, entryType, startTime, duration }) => ({
  name,
  entryType,
  startTime,
  duration,
}));
console.log(JSON.stringify({ status, timeOrigin: performance.timeOrigin, entries }));
Deno.exit(status);
