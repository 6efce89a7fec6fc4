/**
 * The one way tests start the plugin: as kubelet does, a child process with a request on stdin
 * and a clean environment, under the release binary's permissions.
 *
 * - By default it runs `deno run <release permissions> mod.ts`, the flags scripts/build.ts bakes
 *   into the binaries, with this test process's cache root ({@linkcode cacheRoot}) in place of
 *   the binary's fixed cache path. A permission the binary lacks fails here as on the node.
 * - With `OKE_CP_TEST_BINARY=/path/to/oke-credential-provider` it runs that binary instead,
 *   whose permissions are baked in; test cache directories then live under the binary's own
 *   path, /var/lib/oke-credential-provider, which must exist and be writable by the tests.
 *
 * Test cache directories come from {@linkcode makeCacheDir}, which knows which root applies.
 */

import { API_VERSIONS } from "../../lib/kubelet.ts";
import { DEFAULT_CACHE_DIR } from "../../lib/cache.ts";
import { permissionFlags } from "../../scripts/build.ts";

export const MOD = new URL("../../mod.ts", import.meta.url).pathname;

/** The variable that swaps `deno run mod.ts` for a compiled binary (an interface: keep it). */
export const TEST_BINARY_VAR = "OKE_CP_TEST_BINARY";

/** The compiled binary under test, if any. */
export const testBinary: string | undefined = Deno.env.get(TEST_BINARY_VAR) || undefined;

let root: string | undefined;

/**
 * Where this test process's plugin cache directories live: the binary's fixed path under
 * OKE_CP_TEST_BINARY, else a temp directory of this process (removed when it ends), which the
 * release permission flags then name in place of the fixed path.
 */
export function cacheRoot(): string {
  if (root) return root;
  if (testBinary) return root = DEFAULT_CACHE_DIR;
  root = Deno.makeTempDirSync({ prefix: "okecp-" });
  const made = root;
  addEventListener("unload", () => Deno.removeSync(made, { recursive: true }));
  return root;
}

/**
 * A fresh, empty cache directory the plugin under test may write: under {@linkcode cacheRoot}.
 * The caller removes it.
 */
export async function makeCacheDir(prefix = "t-"): Promise<string> {
  try {
    return await Deno.makeTempDir({ dir: cacheRoot(), prefix });
  } catch (e) {
    if (!testBinary) throw e;
    throw new Error(
      `${TEST_BINARY_VAR}: the binary may write only under ${DEFAULT_CACHE_DIR}, so the tests keep their caches there; create it for this user first (sudo install -d -o "$USER" ${DEFAULT_CACHE_DIR}): ${
        (e as Error).message
      }`,
    );
  }
}

/**
 * The release permission flags, with this process's cache root for the fixed path and deno for
 * the installed binary (the plugin runs itself to refresh a stale token in the background).
 */
export function testPermissions(): string[] {
  return permissionFlags([cacheRoot()], Deno.execPath());
}

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
  /** Leave stdin open after writing it (a test of the plugin's own deadline closes it later). */
  holdStdin?: boolean;
  /** Added to the clean environment; an undefined value removes the variable. */
  env?: Record<string, string | undefined>;
  args?: string[];
  /**
   * Deno's permission flags instead of the release set, for a test about the flags themselves:
   * such a run is always `deno run mod.ts`, whatever OKE_CP_TEST_BINARY says.
   */
  permissions?: readonly string[];
  /** The safety net: the process is killed after this long (a hang shows as `signal`). */
  killAfterMs?: number;
}

/** The program and arguments that start the plugin for these options. */
export function pluginCommand(
  options: Pick<StartOptions, "args" | "permissions">,
): { program: string; args: string[] } {
  const args = options.args ?? [];
  if (testBinary && !options.permissions) return { program: testBinary, args };
  return {
    program: Deno.execPath(),
    args: ["run", ...(options.permissions ?? testPermissions()), "--quiet", MOD, ...args],
  };
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
  const { program, args } = pluginCommand(options);
  const child = new Deno.Command(program, {
    args,
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
    await writer.close().catch(() => {});
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
 * ```ts ignore
 * const run = await runPlugin({ stdin: kubeletRequest("iad.ocir.io/ns/app:1"), env: emu.env });
 * ```
 */
export function runPlugin(options: StartOptions): Promise<PluginRun> {
  return startPlugin(options).done;
}

/**
 * Waits until the background work a plugin run started (a refresh, or making the spare session
 * key, each in a detached process) is over: its claim file in the cache directory is gone.
 *
 * @example
 * ```ts
 * await settled(cacheDir);
 * ```
 */
export async function settled(dir: string): Promise<void> {
  for (let waited = 0; waited < 20_000; waited += 50) {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    if (!names.some((name) => name.endsWith(".claim"))) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`background work in ${dir} did not finish within 20 s`);
}

/**
 * Makes the cached docker token of `host` in `dir` stale (its refresh point passed, still usable),
 * once the background work of the run that cached it is over; returns the entry as it was.
 *
 * @example
 * ```ts
 * const { token } = await makeStale(cacheDir, "iad.ocir.io");
 * ```
 */
export async function makeStale(dir: string, host: string): Promise<{ token: string }> {
  await settled(dir);
  const file = `${dir}/docker-${host}.json`;
  const entry = JSON.parse(await Deno.readTextFile(file));
  await Deno.writeTextFile(file, JSON.stringify({ ...entry, refreshAt: Date.now() / 1000 - 1 }));
  return entry;
}
