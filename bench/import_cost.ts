/**
 * The cost of loading modules in a fresh process: imports every specifier given (all at once,
 * as a static import list would) and prints one JSON line with the milliseconds it took. Run by
 * bench.ts once per module, in a new process each time, so nothing is loaded yet.
 *
 *   deno run -A bench/import_cost.ts <specifier>...
 *
 * @module
 */

const start = performance.now();
await Promise.all(Deno.args.map((specifier) => import(specifier)));
console.log(JSON.stringify({ ms: performance.now() - start }));
