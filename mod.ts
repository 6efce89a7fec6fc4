/**
 * oke-credential-provider: kubelet's image credential provider for OCI Registry (OCIR).
 *
 * Kubelet writes a CredentialProviderRequest to stdin; we answer on stdout with a docker token
 * for the image's OCIR host, obtained with the node's own identity (instance principals). This
 * file only hands the process's streams to {@linkcode run} (lib/plugin.ts) and exits with its
 * status; every step lives in `lib/`.
 *
 * @module
 */

import { run } from "./lib/plugin.ts";

const encoder = new TextEncoder();

/** Writes a whole line, however short the writes the pipe takes. */
function writeLine(stream: { writeSync(p: Uint8Array): number }, line: string): void {
  const bytes = encoder.encode(`${line}\n`);
  for (let at = 0; at < bytes.length;) at += stream.writeSync(bytes.subarray(at));
}

Deno.exit(
  await run(Deno.args, {
    stdin: Deno.stdin,
    stdout: (line) => writeLine(Deno.stdout, line),
    stderr: (line) => writeLine(Deno.stderr, line),
    exit: Deno.exit,
  }),
);
