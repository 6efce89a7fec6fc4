/**
 * The emulator as tests use it: {@linkcode emulatorTest} gives one test its own emulator (and a
 * client that reaches the emulated hosts) and closes both however the test ends; a {@linkcode Rig}
 * lets a test react to the emulator's requests as they happen.
 *
 * @module
 */
import {
  type Emulator,
  type EmulatorOptions,
  type RequestLogEntry,
  startEmulator,
} from "../emulator/mod.ts";
import { emulatorClient } from "../emulator/client.ts";
import { makeCacheDir } from "./plugin_process.ts";

/** An emulator, and hooks called as each of its requests is answered (or dropped, or hung). */
export interface Rig {
  emu: Emulator;
  hooks: Set<(entry: RequestLogEntry) => void>;
}

/** Starts an emulator whose request log the tests can react to as it happens. */
export async function startRig(options: EmulatorOptions = {}): Promise<Rig> {
  const hooks = new Set<(entry: RequestLogEntry) => void>();
  const emu = await startEmulator({
    ...options,
    onRequest: (entry) => {
      options.onRequest?.(entry);
      hooks.forEach((hook) => hook(entry));
    },
  });
  return { emu, hooks };
}

/** What an emulator test gets: its rig and an HTTP client through the emulator's proxy and CA. */
export interface EmulatorFixture extends Rig {
  client: Deno.HttpClient;
}

/**
 * Registers a test that runs with a fresh emulator of its own. The emulator's servers outlive a
 * test step, so the op and resource sanitizers are off.
 */
export function emulatorTest(
  name: string,
  fn: (t: Deno.TestContext, fixture: EmulatorFixture) => Promise<void>,
  options: EmulatorOptions = {},
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const rig = await startRig(options);
      const client = await emulatorClient(rig.emu.env);
      try {
        await fn(t, { ...rig, client });
      } finally {
        client.close();
        await rig.emu.close();
      }
    },
  });
}

/**
 * {@linkcode emulatorTest} with a fresh temporary directory of the test's own (a cache directory,
 * or a root to plant files under), removed however the test ends.
 */
export function emulatorDirTest(
  name: string,
  fn: (fixture: EmulatorFixture, dir: string) => Promise<void>,
  options: EmulatorOptions = {},
): void {
  emulatorTest(name, async (_t, fixture) => {
    // Where the plugin under test may write (its caches, and what a test plants beside them).
    const dir = await makeCacheDir();
    try {
      await fn(fixture, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }, options);
}

/**
 * Drops the connection of the endpoint's next request, and only that one: the emulator's `drop`
 * lasts until cleared, so the fault is cleared the moment the drop happens.
 */
export function dropOnce(rig: Rig, endpoint: string): void {
  rig.emu.fault(endpoint, { drop: true });
  const hook = (entry: RequestLogEntry) => {
    if (entry.reason !== "fault: drop") return;
    rig.emu.clearFaults();
    rig.hooks.delete(hook);
  };
  rig.hooks.add(hook);
}

/** Resolves once the emulator has logged a request that `match` accepts. */
export function waitForRequest(
  rig: Rig,
  match: (entry: RequestLogEntry) => boolean,
): Promise<RequestLogEntry> {
  const seen = rig.emu.requests.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const hook = (entry: RequestLogEntry) => {
      if (!match(entry)) return;
      rig.hooks.delete(hook);
      resolve(entry);
    };
    rig.hooks.add(hook);
  });
}
