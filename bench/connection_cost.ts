/**
 * What a new HTTPS connection costs a fresh process, apart from the request itself: the same
 * cheap request (`GET /v2/`, answered 401 by the registry) is sent to host A twice, then to host
 * B once. A's first request pays the TLS library's start-up and a handshake; its second reuses
 * the connection; B's pays a handshake only. Prints one JSON line of milliseconds.
 *
 *   deno run -A bench/connection_cost.ts <host A> <host B>
 *
 * @module
 */

const [a, b] = Deno.args;

async function timed(host: string): Promise<number> {
  const start = performance.now();
  const response = await fetch(`https://${host}/v2/`);
  await response.arrayBuffer(); // read to the end so that the connection can be reused
  return performance.now() - start;
}

const firstA = await timed(a);
const againA = await timed(a);
const firstB = await timed(b);
console.log(JSON.stringify({ firstA, againA, firstB }));
