/**
 * Faults on demand. A fault is set on an endpoint: a whole service ("imds", "auth", "ocir") or
 * one path of it ("imds:identity/cert.pem", "ocir:/docker/token": any path ending with the
 * suffix). A request obeys the most specific entries first.
 */

/** What can go wrong with an endpoint. */
export interface Fault {
  /** Statuses to answer instead of serving, consumed one per request (a queue). */
  status?: number[];
  /** `Retry-After` seconds sent with each queued status. */
  retryAfter?: number;
  /** Extra delay before answering, ms. */
  latencyMs?: number;
  /** Never answer (until the emulator closes). */
  hang?: boolean;
  /** Close the connection without answering. */
  drop?: boolean;
  /** Send this text as the body instead of the real one (same status and headers). */
  body?: string;
  /** Answer 307 Temporary Redirect to this URL instead of serving. */
  redirect?: string;
  /** Shift this service's clock by this many seconds (date checks and issued times). */
  clockSkewSec?: number;
}

/** The services whose endpoints take faults. */
export type Service = "imds" | "auth" | "ocir" | "idcs";

/** The effect of the faults that match one request. */
export interface Effect {
  status?: number;
  retryAfter?: number;
  latencyMs: number;
  hang: boolean;
  drop: boolean;
  body?: string;
  redirect?: string;
  clockSkewSec: number;
}

/** The set faults, by endpoint. */
export class Faults {
  #entries = new Map<string, Fault>();

  /** Sets (replaces) the fault of an endpoint; the status queue is copied. */
  set(endpoint: string, fault: Fault): void {
    const [service] = endpoint.split(":", 1);
    if (!["imds", "auth", "ocir", "idcs"].includes(service)) {
      throw new Error(`unknown fault endpoint "${endpoint}"`);
    }
    this.#entries.set(endpoint, { ...fault, status: fault.status ? [...fault.status] : undefined });
  }

  /** Removes every fault. */
  clear(): void {
    this.#entries.clear();
  }

  /** Works out, and consumes, what happens to one request; path-specific entries come first. */
  take(service: Service, path: string): Effect {
    const matching: Fault[] = [];
    for (const [endpoint, fault] of this.#entries) {
      const suffix = endpoint.slice(service.length + 1);
      if (endpoint.startsWith(`${service}:`) && suffix !== "" && path.endsWith(suffix)) {
        matching.push(fault);
      }
    }
    const whole = this.#entries.get(service);
    if (whole) matching.push(whole);
    const first = <K extends keyof Fault>(key: K) =>
      matching.find((f) => f[key] !== undefined)?.[key];
    const queued = matching.find((f) => f.status && f.status.length > 0);
    const status = queued?.status?.shift();
    return {
      status,
      retryAfter: status === undefined ? undefined : queued?.retryAfter,
      latencyMs: first("latencyMs") ?? 0,
      hang: first("hang") ?? false,
      drop: first("drop") ?? false,
      body: first("body"),
      redirect: first("redirect"),
      clockSkewSec: first("clockSkewSec") ?? 0,
    };
  }
}
