/**
 * Every network call of the plugin goes through {@linkcode call}: the invocation's deadline
 * (lib/deadline.ts) over it all, a timeout per attempt, retries with exponential backoff and full
 * jitter that honour `Retry-After`, and failures turned into one-line {@linkcode PluginError}s
 * naming the step, the host and the status. Each answered call is recorded as a
 * `performance.measure` named by its step: `deno task bench` reads them to time the real code.
 * Proxies (`HTTPS_PROXY`, `NO_PROXY`) and extra CAs (`DENO_CERT`) are the Deno runtime's own
 * behaviour for `fetch`; nothing here changes them (IMDS alone brings its own direct client), and
 * TLS is never relaxed. Redirects are refused: no OCI endpoint the plugin calls redirects, and
 * following one could carry a request, or trust, to another origin.
 *
 * @module
 */

import { type Deadline, deadlineError, expired, remaining } from "./deadline.ts";
import { PluginError, type Step } from "./errors.ts";
import { type Logger, redact } from "./log.ts";

/** How to call one endpoint. */
export interface CallOptions {
  step: Step;
  deadline: Deadline;
  log: Logger;
  /** HTTP statuses worth another try; connection failures and timeouts always are. */
  retryOn: readonly number[];
  /** Error statuses that are answers for the caller to read, not failures (a registry's 401 challenge). */
  accept?: readonly number[];
  /** Tries in all, the first included. */
  attempts?: number;
  /** Timeout of one try, in milliseconds. */
  attemptTimeoutMs?: number;
  /** What an error status most likely means, for the operator. */
  hint?: (status: number) => string | undefined;
  /** The HTTP client to send with, when not the runtime's default (IMDS: never a proxy). */
  client?: Deno.HttpClient;
}

/** A request to send; built anew for each try, so that a signature's date is fresh. */
export type RequestFactory = () => Promise<RequestInit> | RequestInit;

const BACKOFF_BASE_MS = 200;
const BACKOFF_CAP_MS = 4000;

/** Full jitter: a uniform wait up to an exponentially growing cap. */
function backoff(attempt: number): number {
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

/** `Retry-After` in milliseconds: delta-seconds or an HTTP date. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * The service's own words from an error body: OCI's `{code, message}`, a registry's `{errors}` or
 * OAuth's `{error, error_description}` (an identity domain).
 */
function errorSummary(body: string): string {
  try {
    const json = JSON.parse(body);
    const e = Array.isArray(json?.errors) ? json.errors[0] : json;
    const words = [e?.code ?? e?.error, e?.message ?? e?.error_description]
      .filter((w) => typeof w === "string").join(": ");
    // Redacted before it is cut: a secret cut short may no longer look like one to redact().
    return words ? ` ${redact(words).slice(0, 200)}` : "";
  } catch {
    return "";
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** A failed try, and whether another is worth it. */
interface Failure {
  failure: PluginError;
  retry: boolean;
  /** What the server asked to wait (`Retry-After`), in ms. */
  wait?: number;
}

/** One try: the response, or why it failed. */
async function attemptOnce(
  url: URL,
  init: RequestInit,
  options: CallOptions,
  timeoutMs: number,
): Promise<Response | Failure> {
  const { step } = options;
  const host = url.host;
  try {
    const signal = AbortSignal.any([options.deadline.signal, AbortSignal.timeout(timeoutMs)]);
    const response = await fetch(url, {
      ...init,
      signal,
      redirect: "error",
      ...(options.client ? { client: options.client } : {}),
    });
    if (response.url !== url.href) {
      await response.body?.cancel();
      return { failure: redirected(step, host, response.url), retry: false };
    }
    if (response.ok || options.accept?.includes(response.status)) return response;
    const summary = errorSummary(await response.text());
    return {
      failure: new PluginError(step, "HTTP_STATUS", `HTTP ${response.status}${summary}`, {
        host,
        status: response.status,
        hint: options.hint?.(response.status),
      }),
      retry: options.retryOn.includes(response.status),
      wait: retryAfterMs(response.headers.get("retry-after")),
    };
  } catch (e) {
    if (expired(options.deadline)) throw deadlineError(step, host);
    if (e instanceof DOMException && e.name === "TimeoutError") {
      const reason = `no answer within ${Math.round(timeoutMs / 1000)} s`;
      return { failure: new PluginError(step, "TIMEOUT", reason, { host, cause: e }), retry: true };
    }
    const cause = networkCause(e);
    if (REDIRECT.test(cause)) return { failure: redirected(step, host), retry: false };
    // A certificate the node does not trust is refused the same way on every try.
    const untrusted = UNTRUSTED_CERTIFICATE.test(cause);
    const failure = new PluginError(step, "NETWORK", `request failed: ${cause}`, {
      host,
      cause: e,
      hint: untrusted ? UNTRUSTED_HINT : undefined,
    });
    return { failure, retry: !untrusted };
  }
}

/**
 * Sends a request, retrying what is worth retrying, and returns the first 2xx response (or one
 * with a status in `accept`). A server certificate the node does not trust is never worth a
 * retry: it fails at once, with a hint. Only IMDS (link-local) is ever called over plain HTTP.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 * import { createLogger } from "./log.ts";
 *
 * const res = await call(new URL("http://169.254.169.254/opc/v2/instance/region"),
 *   () => ({ headers: { authorization: "Bearer Oracle" } }),
 *   {
 *     step: "IMDS",
 *     deadline: deadline(45),
 *     log: createLogger("warn"),
 *     retryOn: [404, 429, 500, 502, 503, 504],
 *   });
 * ```
 */
export async function call(
  url: URL,
  request: RequestFactory,
  options: CallOptions,
): Promise<Response> {
  const { step, log } = options;
  const host = url.host;
  if (url.protocol !== "https:" && step !== "IMDS") {
    throw new PluginError(
      step,
      "REFUSED",
      `refusing plain ${url.protocol} for ${url.origin}: only HTTPS`,
      { host },
    );
  }
  const attempts = options.attempts ?? 5;
  const started = performance.now();
  for (let attempt = 0;; attempt++) {
    if (expired(options.deadline)) throw deadlineError(step, host);
    const timeoutMs = Math.min(remaining(options.deadline), options.attemptTimeoutMs ?? 10_000);
    const outcome = await attemptOnce(url, await request(), options, timeoutMs);
    if (outcome instanceof Response) {
      performance.measure(step, { start: started, detail: host });
      return outcome;
    }
    const { failure, retry } = outcome;
    if (!retry || attempt + 1 >= attempts) throw failure;
    const wait = outcome.wait ?? backoff(attempt);
    if (wait >= remaining(options.deadline)) {
      // Tries that kept timing out until too little time was left: the deadline cut it short.
      if (failure.code === "TIMEOUT") throw deadlineError(step, host);
      throw new PluginError(step, failure.code, `${failure.reason}; no time left to retry`, {
        host,
        status: failure.status,
        hint: failure.hint,
      });
    }
    const next = `attempt ${attempt + 2} of ${attempts}`;
    log.info(step, `${failure.reason}; retrying in ${Math.round(wait)} ms (${next})`, host);
    await sleep(wait, options.deadline.signal);
  }
}

// Deno's words for a redirect met with `redirect: "error"`.
const REDIRECT = /redirect mode is set to 'error'/;

function redirected(step: Step, host: string, to?: string): PluginError {
  return new PluginError(
    step,
    "REFUSED",
    `the answer was a redirect${to ? ` to ${new URL(to).origin}` : ""}, which is never followed`,
    {
      host,
      hint:
        "no OCI endpoint redirects: something between this node and the service (a proxy, a captive portal, a wrong OCI_METADATA_BASE_URL or OCI_SDK_AUTH_CLIENT_REGION_URL) answers instead",
    },
  );
}

// rustls' words for a server certificate that does not verify (unknown CA, expired, wrong name).
const UNTRUSTED_CERTIFICATE = /invalid peer certificate/i;
const UNTRUSTED_HINT =
  "the server's TLS certificate is not trusted by this node: a TLS-inspecting proxy needs its CA in DENO_CERT; verification is never turned off";

/** The innermost message of a fetch failure, which names the real cause (DNS, TLS, refused). */
function networkCause(error: unknown): string {
  let e = error;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").slice(0, 300);
}

/**
 * Reads a response body as a JSON object, or fails as BAD_RESPONSE naming what came instead.
 *
 * @example
 * ```ts
 * declare const response: Response; // from call()
 * const { token } = await readJson(response, "federation");
 * ```
 */
export async function readJson(response: Response, step: Step): Promise<Record<string, unknown>> {
  const host = new URL(response.url).host;
  let text: string;
  try {
    text = await response.text();
  } catch (e) {
    throw new PluginError(step, "NETWORK", `the answer was cut off: ${networkCause(e)}`, { host });
  }
  try {
    const value = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch {
    // reported below
  }
  const type = response.headers.get("content-type") ?? "no content type";
  throw new PluginError(
    step,
    "BAD_RESPONSE",
    `answered ${text.length} bytes of ${type} that are not a JSON object`,
    {
      host,
    },
  );
}

/**
 * Reads an answer of the form `{"token": "…"}` (the auth service's, an identity domain's) and
 * returns the token, or fails as BAD_RESPONSE.
 *
 * @example
 * ```ts
 * declare const response: Response;
 * const token = await readToken(response, "federation");
 * ```
 */
export async function readToken(response: Response, step: Step): Promise<string> {
  const { token } = await readJson(response, step);
  if (typeof token !== "string" || token === "") {
    throw new PluginError(step, "BAD_RESPONSE", "the answer has no token", {
      host: new URL(response.url).host,
    });
  }
  return token;
}
