/**
 * The one error type of the plugin. Every failure an operator can see carries the step of the
 * work it happened in, the host that was being talked to (if any) and the cause, so that a single
 * line in kubelet's log says where to look.
 *
 * @module
 */

/** The steps of the plugin's work, in the order they run. */
export type Step =
  | "arguments"
  | "request"
  | "image"
  | "cache"
  | "IMDS"
  | "identity"
  | "federation"
  | "workload identity"
  | "OCIR token"
  | "manifest check"
  | "status";

/** What kind of failure it was; tests and `doctor` branch on it, operators read the message. */
export type ErrorCode =
  | "BAD_INPUT" // the request, the image reference or a flag is wrong
  | "BAD_RESPONSE" // a service answered something that is not what its API promises
  | "HTTP_STATUS" // a service answered with an error status
  | "NETWORK" // no answer: refused, reset, DNS, TLS
  | "TIMEOUT" // the invocation's deadline ran out
  | "IDENTITY" // the instance certificate, key or token is unusable
  | "REFUSED"; // the plugin will not do it (a registry host it does not trust)

/** Options of a {@linkcode PluginError}. */
export interface PluginErrorOptions {
  /** The host the step was talking to. */
  host?: string;
  /** The HTTP status, when a service answered with an error. */
  status?: number;
  /** What the operator can do about it. */
  hint?: string;
  /** The underlying error, kept for debugging; never printed whole. */
  cause?: unknown;
}

/**
 * A failure of one step, written for the operator reading kubelet's log.
 *
 * @example
 * ```ts
 * const e = new PluginError("federation", "HTTP_STATUS", "HTTP 401 NotAuthenticated", {
 *   host: "auth.us-ashburn-1.oraclecloud.com",
 *   status: 401,
 *   hint: "check the node's clock",
 * });
 * e.message; // "federation auth.us-ashburn-1.oraclecloud.com: HTTP 401 NotAuthenticated (check the node's clock)"
 * ```
 */
export class PluginError extends Error {
  override name = "PluginError";
  readonly step: Step;
  readonly code: ErrorCode;
  readonly host?: string;
  readonly status?: number;
  readonly hint?: string;
  readonly reason: string;

  constructor(step: Step, code: ErrorCode, reason: string, options: PluginErrorOptions = {}) {
    const where = options.host ? `${step} ${options.host}` : step;
    const hint = options.hint ? ` (${options.hint})` : "";
    super(`${where}: ${reason}${hint}`, { cause: options.cause });
    this.step = step;
    this.code = code;
    this.reason = reason;
    this.host = options.host;
    this.status = options.status;
    this.hint = options.hint;
  }
}

/**
 * Describes any thrown value in one line without a stack trace.
 *
 * @example
 * ```ts
 * describe(new TypeError("error sending request")); // "TypeError: error sending request"
 * ```
 */
export function describe(error: unknown): string {
  if (error instanceof PluginError) return error.message;
  if (error instanceof Error) {
    const inner = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.name}: ${error.message}${inner}`.replace(/\s+/g, " ");
  }
  return String(error).replace(/\s+/g, " ");
}
