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

/** How to run the plugin. */
export interface RunOptions {
  stdin: string | Uint8Array;
  env?: Record<string, string>;
  args?: string[];
  /** Kills the process after this many ms (a safety net for tests; the plugin has its own deadline). */
  killAfterMs?: number;
}

/**
 * Runs the plugin once. Only PATH, HOME and DENO_DIR come from the test's own environment, so
 * that nothing on the developer's machine (a proxy, say) changes what the plugin does.
 */
export async function runPlugin(options: RunOptions): Promise<PluginRun> {
  const inherited = Object.fromEntries(
    ["PATH", "HOME", "DENO_DIR"].flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MOD, ...(options.args ?? [])],
    clearEnv: true,
    env: { ...inherited, DENO_NO_UPDATE_CHECK: "1", ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.killAfterMs ?? 120_000);
  const writer = child.stdin.getWriter();
  await writer.write(
    typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
  )
    .catch(() => {}); // the plugin may stop reading early (oversized input)
  await writer.close().catch(() => {});
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  let response;
  try {
    response = stdout ? JSON.parse(stdout) : undefined;
  } catch {
    response = undefined;
  }
  return { code: out.code, stdout, stderr: new TextDecoder().decode(out.stderr), response };
}
