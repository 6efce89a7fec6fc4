/**
 * Logging to stderr: one line per event, with a level and a step, and with every secret the
 * plugin handles scrubbed out, whatever the level. Kubelet shows a failing plugin's stderr in its
 * own log, so these lines are what an operator sees at 2 a.m.
 *
 * @module
 */

import { describe, PluginError, type Step } from "./errors.ts";

/** Log levels, from the quietest. */
export const LEVELS = ["error", "warn", "info", "debug"] as const;
/** One of {@linkcode LEVELS}. */
export type Level = typeof LEVELS[number];

/** A logger bound to a level. */
export interface Logger {
  readonly level: Level;
  error(step: Step, message: string, host?: string): void;
  warn(step: Step, message: string, host?: string): void;
  info(step: Step, message: string, host?: string): void;
  debug(step: Step, message: string, host?: string): void;
  /** Logs a failure at error level: a PluginError as it is, anything else as an internal error. */
  failure(error: unknown): void;
}

// JWTs (security tokens, docker tokens), PEM bodies, `ST$` key ids and long base64 runs are the
// shapes a secret of ours can take; a line never carries them, even in debug.
const SECRETS: [RegExp, (match: string) => string][] = [
  [/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g, () => "[PEM redacted]"],
  [/ST\$[A-Za-z0-9._~+/=-]+/g, () => "ST$[redacted]"],
  // With any base64 run right before it: a JWT after a '+' or '/' is still a JWT, and `eyJ`
  // inside a blob must take the blob's head with it.
  [
    /[A-Za-z0-9+/_-]*eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g,
    () => "[JWT redacted]",
  ],
  [/[A-Za-z0-9+/_-]{80,}={0,2}/g, (run) => isPath(run) ? run : "[base64 redacted]"],
];

/**
 * Whether a long base64-alphabet run is a file path (a cache directory, a temp file) rather than
 * a secret: it starts with '/', has no '+', '=' or '//', and no name in it holds more than three
 * capitals. Names rarely do; base64 of random bytes is four tenths capitals with a '/' only
 * about every 64 characters, so 80 or more of its characters practically never pass (none of a
 * million 80-character runs did, each with a '/' forced in front).
 */
function isPath(run: string): boolean {
  return run.startsWith("/") && !/[+=]|\/\//.test(run) &&
    run.split("/").every((name) => name.replace(/[^A-Z]/g, "").length <= 3);
}

/**
 * Removes anything shaped like a token, key or certificate from a text.
 *
 * @example
 * ```ts
 * redact("token eyJhbGciOi.eyJzdWIi.c2ln"); // "token [JWT redacted]"
 * ```
 */
export function redact(text: string): string {
  return SECRETS.reduce((t, [pattern, replacement]) => t.replace(pattern, replacement), text);
}

/**
 * Formats one log line: `oke-credential-provider level=warn step=cache msg="..."`.
 *
 * @example
 * ```ts
 * formatLine("warn", "cache", "not writable", undefined);
 * // 'oke-credential-provider level=warn step=cache msg="not writable"'
 * ```
 */
export function formatLine(level: Level, step: Step, message: string, host?: string): string {
  const at = host ? ` host=${host}` : "";
  // Control and format characters (an escape sequence, a bidi override, a zero-width space) from
  // an image reference or an answer would make the line read as something else: shown escaped.
  const msg = redact(message).replace(/\s+/g, " ").replaceAll('"', "'")
    .replace(/\p{C}/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`);
  return `oke-credential-provider level=${level} step=${
    step.replaceAll(" ", "-")
  }${at} msg="${msg}"`;
}

/**
 * Creates a logger that writes lines at `level` and quieter to stderr.
 *
 * @example
 * ```ts
 * const log = createLogger("info");
 * log.info("cache", "using cached token", "iad.ocir.io");
 * ```
 */
export function createLogger(
  level: Level,
  write: (line: string) => void = (line) => console.error(line),
): Logger {
  const rank = LEVELS.indexOf(level);
  const at = (l: Level) => (step: Step, message: string, host?: string) => {
    if (LEVELS.indexOf(l) <= rank) write(formatLine(l, step, message, host));
  };
  const error = at("error");
  return {
    level,
    error,
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
    failure(e) {
      if (e instanceof PluginError) {
        error(e.step, `${e.reason}${e.hint ? ` (${e.hint})` : ""}`, e.host);
      } else error("request", `internal error: ${describe(e)}`);
    },
  };
}
