/**
 * The invocation's deadline: one point in time that every request, retry and lock wait of one
 * run fits in, made by {@linkcode deadline} and nowhere else, and the error a step cut short by
 * it reports. The process-level watchdog (a stdin that never closes) is armed on the same
 * deadline. This module is on the warm path: it imports only the error type, and its timers are
 * AbortSignal timeouts, which cost ~0.5 ms to arm where a Deno process's first `setTimeout`
 * costs 5–15 ms.
 *
 * @module
 */

import { PluginError, type Step } from "./errors.ts";

/** The time the whole invocation may take; every request, retry and lock wait fits in it. */
export interface Deadline {
  /** Epoch milliseconds. */
  readonly at: number;
  /** Aborts when the deadline passes. */
  readonly signal: AbortSignal;
}

/**
 * Starts a deadline `seconds` from now.
 *
 * @example
 * ```ts
 * const d = deadline(45);
 * remaining(d); // ≈ 45000
 * ```
 */
export function deadline(seconds: number): Deadline {
  return { at: Date.now() + seconds * 1000, signal: AbortSignal.timeout(seconds * 1000) };
}

/**
 * Milliseconds left before the deadline (0 when passed).
 *
 * @example
 * ```ts
 * remaining(deadline(1)) <= 1000; // true
 * ```
 */
export function remaining(d: Deadline): number {
  return Math.max(0, d.at - Date.now());
}

/**
 * Whether the deadline has passed. Its signal alone may lag: an attempt given all the time left
 * times out on its own timer in the same instant, and must still be reported as the deadline.
 *
 * @example
 * ```ts
 * expired(deadline(45)); // false
 * ```
 */
export function expired(d: Deadline): boolean {
  return d.signal.aborted || remaining(d) === 0;
}

/**
 * The error for a step cut short by the deadline.
 *
 * @example
 * ```ts
 * const e = deadlineError("IMDS", "169.254.169.254");
 * e.code; // "TIMEOUT"
 * ```
 */
export function deadlineError(step: Step, host?: string): PluginError {
  return new PluginError(step, "TIMEOUT", "the invocation's deadline ran out during this step", {
    host,
    hint: "raise --timeout (kubelet allows 60 s) or find what is slow on this node's network",
  });
}

/**
 * Calls `onExpired` `graceMs` after the deadline: the last guard for what no request timeout
 * covers (a stdin that stays open and silent). Its timer keeps the process alive, so it is for a
 * process that ends by exiting.
 *
 * @example
 * ```ts
 * watchdog(deadline(45), 1000, () => Deno.exit(1));
 * ```
 */
export function watchdog(d: Deadline, graceMs: number, onExpired: () => void): void {
  AbortSignal.timeout(remaining(d) + graceMs).addEventListener("abort", onExpired, { once: true });
}
