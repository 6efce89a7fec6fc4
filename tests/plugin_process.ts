/**
 * Runs the plugin as kubelet does: `deno run -A mod.ts` as a child process with a request on
 * stdin, a clean environment, and the emulator's variables.
 */

import { API_VERSIONS } from "../lib/kubelet.ts";

export const MOD = new URL("../mod.ts", import.meta.url).pathname;

/** A CredentialProviderRequest for `image`. */
export function kubeletRequest(image: string, apiVersion: string = API_VERSIONS[0]): string {
  return JSON.stringify({ apiVersion, kind: "CredentialProviderRequest", image });
}

/** What one plugin run did. */
export interface PluginRun {
  code: number;
  /** Set when the test's safety net had to kill the process. */
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** The parsed response, when stdout holds one. */
  response?: {
    apiVersion: string;
    kind: string;
    cacheKeyType: string;
    cacheDuration: string;
    auth: Record<string, { username: string; password: string }>;
  };
}

/** How to start the plugin. */
export interface StartOptions {
  stdin: string | Uint8Array;
  /** Added to the clean environment; an undefined value removes the variable. */
  env?: Record<string, string | undefined>;
  args?: string[];
  /** Deno's permission flags; `-A` unless a test narrows them. */
  permissions?: readonly string[];
  /** Leave stdin open after writing `stdin`, as a kubelet whose pipe never closes would. */
  holdStdin?: boolean;
  /** The safety net: the process is killed after this long (a hang shows as `signal`). */
  killAfterMs?: number;
}

/** A running plugin process. */
export interface Started {
  child: Deno.ChildProcess;
  done: Promise<PluginRun>;
}

/**
 * Starts the plugin as kubelet does (request on stdin, clean environment), without waiting, so
 * that a test can kill it. Only PATH, HOME and DENO_DIR come from the test's own environment.
 */
export function startPlugin(options: StartOptions): Started {
  const env: Record<string, string> = { DENO_NO_UPDATE_CHECK: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? ["-A"]), "--quiet", MOD, ...(options.args ?? [])],
    clearEnv: true,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = (async () => {
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, options.killAfterMs ?? 60_000);
    const writer = child.stdin.getWriter();
    const bytes = typeof options.stdin === "string"
      ? new TextEncoder().encode(options.stdin)
      : options.stdin;
    if (bytes.length > 0) await writer.write(bytes).catch(() => {}); // a killed plugin stops reading
    if (!options.holdStdin) await writer.close().catch(() => {});
    const out = await child.output();
    clearTimeout(timer);
    if (options.holdStdin) await writer.close().catch(() => {});
    const stdout = new TextDecoder().decode(out.stdout);
    let response;
    try {
      response = stdout ? JSON.parse(stdout) : undefined;
    } catch {
      response = undefined;
    }
    return {
      code: out.code,
      signal: out.signal,
      stdout,
      stderr: new TextDecoder().decode(out.stderr),
      response,
    };
  })();
  return { child, done };
}

/**
 * Runs the plugin once and waits for it.
 *
 * @example
 * ```ts
 * const run = await runPlugin({ stdin: kubeletRequest("iad.ocir.io/ns/app:1"), env: emu.env });
 * ```
 */
export function runPlugin(options: StartOptions): Promise<PluginRun> {
  return startPlugin(options).done;
}
