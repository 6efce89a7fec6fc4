/**
 * TCP plumbing: a byte relay that can cut any connection it carries (how a "drop" fault closes a
 * connection mid-request, which Deno.serve alone cannot do), and the HTTP CONNECT proxy through
 * which clients reach the HTTPS services under their real host names.
 */

/** Relays TCP connections to a local port and can cut them by the relay's outbound port. */
export class Relay {
  #byLocalPort = new Map<number, [Deno.Conn, Deno.Conn]>();
  #loose = new Set<Deno.Conn>();

  /** Remembers a connection not yet relayed (e.g. a proxy client still sending its head). */
  hold(conn: Deno.Conn): void {
    this.#loose.add(conn);
  }

  /** Forgets a held connection. */
  release(conn: Deno.Conn): void {
    this.#loose.delete(conn);
  }

  /** Pipes client ⇄ 127.0.0.1:port until either side ends; `head` is sent first, if given. */
  async pipe(client: Deno.Conn, port: number): Promise<void> {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      close(client);
      return;
    }
    const key = (upstream.localAddr as Deno.NetAddr).port;
    this.#byLocalPort.set(key, [client, upstream]);
    // When either direction ends, the exchange is over: HTTP clients never half-close usefully.
    await Promise.race([copy(client, upstream), copy(upstream, client)]);
    this.#byLocalPort.delete(key);
    close(client);
    close(upstream);
  }

  /** Cuts the connection whose outbound side has this local port (the server's remoteAddr). */
  cut(localPort: number): boolean {
    const pair = this.#byLocalPort.get(localPort);
    if (!pair) return false;
    this.#byLocalPort.delete(localPort);
    pair.forEach(close);
    return true;
  }

  /** Cuts every connection, relayed or held. */
  cutAll(): void {
    for (const port of [...this.#byLocalPort.keys()]) this.cut(port);
    this.#loose.forEach(close);
    this.#loose.clear();
  }
}

async function copy(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(32 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    // A closed or reset socket simply ends the relay.
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Accepts connections on a listener and relays each to a local port. */
export async function relayListener(
  listener: Deno.Listener,
  relay: Relay,
  port: number,
): Promise<void> {
  try {
    for await (const conn of listener) relay.pipe(conn, port);
  } catch {
    // listener closed
  }
}

/** What the CONNECT proxy reports for each tunnel request. */
export interface ConnectEvent {
  /** The `host:port` asked for, as sent. */
  authority: string;
  allowed: boolean;
  status: number;
}

/** Options of the CONNECT proxy. */
export interface ConnectProxyOptions {
  /** Whether a lower-case `host:port` may be tunnelled. */
  allow(authority: string): boolean;
  /** The loopback port that an allowed tunnel leads to, by the `host:port` asked for. */
  targetPort: number | ((authority: string) => number);
  relay: Relay;
  onConnect(event: ConnectEvent): void;
}

/**
 * Serves an HTTP proxy on the listener that answers only CONNECT: allowed authorities get
 * `200 Connection Established` and a tunnel to targetPort; anything else 403 (or 405 for other
 * methods) and a closed connection.
 */
export async function connectProxy(
  listener: Deno.Listener,
  opts: ConnectProxyOptions,
): Promise<void> {
  try {
    for await (const conn of listener) handle(conn, opts);
  } catch {
    // listener closed
  }
}

async function handle(conn: Deno.Conn, opts: ConnectProxyOptions): Promise<void> {
  opts.relay.hold(conn);
  try {
    await tunnel(conn, opts);
  } finally {
    opts.relay.release(conn);
  }
}

async function tunnel(conn: Deno.Conn, opts: ConnectProxyOptions): Promise<void> {
  const head = await readHead(conn);
  if (head === null) return close(conn);
  const [method = "", authority = ""] = head.split("\r\n")[0].split(" ");
  const wanted = authority.toLowerCase();
  let status = 200;
  if (method !== "CONNECT") status = 405;
  else if (!opts.allow(wanted)) status = 403;
  opts.onConnect({ authority, allowed: status === 200, status });
  const enc = new TextEncoder();
  if (status !== 200) {
    const reason = status === 405 ? "Method Not Allowed" : "Forbidden";
    await conn.write(enc.encode(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
    )).catch(() => {});
    return close(conn);
  }
  try {
    await conn.write(enc.encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
  } catch {
    return close(conn);
  }
  const port = typeof opts.targetPort === "number" ? opts.targetPort : opts.targetPort(wanted);
  await opts.relay.pipe(conn, port);
}

/**
 * Reads the request head up to the blank line, byte by byte so that nothing of the tunnelled
 * stream is consumed. Returns null on EOF or an oversized head.
 */
async function readHead(conn: Deno.Conn): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (bytes.length < 8192) {
    let n: number | null;
    try {
      n = await conn.read(one);
    } catch {
      return null;
    }
    if (n === null) return null;
    bytes.push(one[0]);
    const l = bytes.length;
    if (
      l >= 4 && bytes[l - 4] === 13 && bytes[l - 3] === 10 && bytes[l - 2] === 13 &&
      bytes[l - 1] === 10
    ) {
      return new TextDecoder().decode(new Uint8Array(bytes));
    }
  }
  return null;
}
