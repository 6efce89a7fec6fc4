/**
 * One HTTPS POST to an endpoint that only the cluster's CA may vouch for (OKE's proxymux). Deno's
 * `fetch` only adds a given CA to the node's trust store and shows nothing of the peer, so the
 * request runs on a `node:tls` socket given the cluster CA as `ca` (observed with Deno 2.9: the
 * handshake then trusts that CA and not DENO_CERT's). Whatever the runtime's store holds, after
 * the handshake the server's certificate must be the cluster CA or be signed by it, or the socket
 * is closed before one byte of the request (which carries a service-account token) is written. The proxy
 * variables are honoured as `fetch` honours them. Loaded only on the per-workload path.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import { children, oid, readElement } from "./der.ts";
import { PluginError, type Step } from "./errors.ts";
import { type Deadline, deadlineError } from "./deadline.ts";

/** A parsed answer. */
export interface PinnedResponse {
  status: number;
  body: string;
}

/** How to send it. */
export interface PinnedRequest {
  /** The only CA trusted for this endpoint, PEM. */
  caPem: string;
  /** Where the CA came from, for messages. */
  caSource: string;
  headers: Record<string, string>;
  body: string;
  step: Step;
  deadline: Deadline;
}

const SIGNATURES: Record<string, { hash: string; ec: boolean }> = {
  "1.2.840.113549.1.1.11": { hash: "SHA-256", ec: false },
  "1.2.840.113549.1.1.12": { hash: "SHA-384", ec: false },
  "1.2.840.113549.1.1.13": { hash: "SHA-512", ec: false },
  "1.2.840.10045.4.3.2": { hash: "SHA-256", ec: true },
  "1.2.840.10045.4.3.3": { hash: "SHA-384", ec: true },
};
const CURVES: Record<string, string> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
};

/** tbsCertificate fields after the optional explicit version. */
function tbsFields(der: Uint8Array) {
  const [tbs, algorithm, signature] = children(readElement(der));
  const all = children(tbs);
  return {
    tbs: tbs.raw,
    fields: all[0].tag === 0xa0 ? all.slice(1) : all,
    algorithm: oid(children(algorithm)[0].body),
    signature: signature.body.subarray(1), // BIT STRING: skip the unused-bits octet
  };
}

/** An ECDSA DER signature as WebCrypto's r‖s. */
function ecdsaRaw(der: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(2 * size);
  children(readElement(der)).forEach((n, i) => {
    const v = n.body.subarray(Math.max(0, n.body.length - size));
    out.set(v, (i + 1) * size - v.length);
  });
  return out;
}

/**
 * Whether `leafDer` is the CA itself or a certificate the CA signed: the issuer name equals the
 * CA's subject and the signature verifies under the CA's key.
 *
 * @example
 * ```ts
 * declare const serverCertDer: Uint8Array, clusterCaDer: Uint8Array;
 * await issuedBy(serverCertDer, clusterCaDer); // true when the cluster CA signed it
 * ```
 */
export async function issuedBy(leafDer: Uint8Array, caDer: Uint8Array): Promise<boolean> {
  try {
    if (Buffer.from(leafDer).equals(Buffer.from(caDer))) return true;
    const leaf = tbsFields(leafDer), ca = tbsFields(caDer);
    const [, , issuer] = leaf.fields;
    const [, , , , subject, spki] = ca.fields;
    if (!Buffer.from(issuer.raw).equals(Buffer.from(subject.raw))) return false;
    const kind = SIGNATURES[leaf.algorithm];
    if (!kind) return false;
    const keyAlgorithm = children(children(spki)[0]);
    const params = kind.ec
      ? { name: "ECDSA", namedCurve: CURVES[oid(keyAlgorithm[1].body)] }
      : { name: "RSASSA-PKCS1-v1_5", hash: kind.hash };
    const key = await crypto.subtle.importKey(
      "spki",
      spki.raw as Uint8Array<ArrayBuffer>,
      params,
      false,
      ["verify"],
    );
    const size = params.namedCurve === "P-384" ? 48 : 32;
    const signature = kind.ec ? ecdsaRaw(leaf.signature, size) : leaf.signature;
    return await crypto.subtle.verify(
      kind.ec ? { name: "ECDSA", hash: kind.hash } : "RSASSA-PKCS1-v1_5",
      key,
      signature as Uint8Array<ArrayBuffer>,
      leaf.tbs as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}

/** The proxy for `url` from HTTPS_PROXY/NO_PROXY (upper or lower case), as Deno's fetch reads them. */
export function proxyFor(
  url: URL,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): URL | undefined {
  const proxy = env("HTTPS_PROXY") || env("https_proxy");
  if (!proxy) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const skip = (env("NO_PROXY") || env("no_proxy") || "").split(",").map((s) => s.trim())
    .filter(Boolean).some((entry) => {
      if (entry === "*") return true;
      const name = entry.replace(/:\d+$/, "").replace(/^\*?\./, "").toLowerCase();
      return host === name || host.endsWith(`.${name}`);
    });
  if (skip) return undefined;
  return new URL(proxy.includes("://") ? proxy : `http://${proxy}`);
}

/** Reads from `socket` until the end, or rejects on error. */
function readAll(socket: net.Socket | tls.TLSSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
  });
}

/** A CONNECT tunnel through the proxy to `authority`. */
function tunnel(proxy: URL, authority: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(proxy.port || 80), proxy.hostname);
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
      if (status === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`proxy ${proxy.host} answered CONNECT with ${status || "garbage"}`));
      }
    };
    socket.on("data", onData);
    socket.on("error", reject);
    socket.on("connect", () => {
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    });
  });
}

/** Splits an HTTP/1.1 answer (whole, the server closed) into status and body. */
function parseAnswer(bytes: Buffer): PinnedResponse {
  const text = bytes.toString("utf8");
  const end = text.indexOf("\r\n\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
  if (end < 0 || !status) throw new Error("the answer is not HTTP/1.1");
  const head = text.slice(0, end).toLowerCase();
  let body = text.slice(end + 4);
  if (/\r\ntransfer-encoding: *chunked/.test(head)) {
    let out = "";
    for (let at = 0;;) {
      const line = body.indexOf("\r\n", at);
      const size = parseInt(body.slice(at, line), 16);
      if (!(size > 0)) break;
      out += body.slice(line + 2, line + 2 + size);
      at = line + 2 + size + 2;
    }
    body = out;
  }
  return { status, body };
}

/**
 * POSTs to `url` trusting only `request.caPem`; a server certificate it did not issue is refused
 * before anything is sent.
 *
 * @example
 * ```ts
 * import { deadline } from "./deadline.ts";
 *
 * const caPem = await Deno.readTextFile("/etc/kubernetes/ca.crt");
 * const url = new URL("https://10.0.0.2:12250/resourcePrincipalSessionTokens");
 * const { status, body } = await pinnedPost(url, {
 *   caPem,
 *   caSource: "/etc/kubernetes/ca.crt",
 *   headers: { "content-type": "application/json" },
 *   body: "{}",
 *   step: "workload identity",
 *   deadline: deadline(45),
 * });
 * ```
 */
export async function pinnedPost(url: URL, request: PinnedRequest): Promise<PinnedResponse> {
  const host = url.host;
  const caDer = Uint8Array.fromBase64(
    request.caPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, ""),
  );
  const port = Number(url.port || 443);
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const fail = (reason: string, cause?: unknown) =>
    new PluginError(request.step, "NETWORK", reason, { host, cause });
  let socket: tls.TLSSocket | undefined;
  const abort = () => socket?.destroy();
  request.deadline.signal.addEventListener("abort", abort, { once: true });
  try {
    const proxy = proxyFor(url);
    const raw = proxy ? await tunnel(proxy, `${hostname}:${port}`) : undefined;
    socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        // `host` also names what the certificate must match, through a tunnel too.
        ...(raw ? { socket: raw, host: hostname } : { host: hostname, port }),
        ca: [request.caPem],
        ...(net.isIP(hostname) ? {} : { servername: hostname }),
      });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
    });
    const peer = socket.getPeerCertificate(false);
    if (!peer?.raw || !await issuedBy(new Uint8Array(peer.raw), caDer)) {
      socket.destroy();
      throw new PluginError(
        request.step,
        "REFUSED",
        `the server's certificate is not issued by the cluster CA (${request.caSource}): the service-account token was not sent`,
        { host, hint: "check --cluster-ca and --proxymux-url" },
      );
    }
    const body = Buffer.from(request.body, "utf8");
    const head = Object.entries({
      ...request.headers,
      host,
      "content-length": String(body.length),
      connection: "close",
    }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    const answer = readAll(socket);
    socket.write(`POST ${url.pathname}${url.search} HTTP/1.1\r\n${head}\r\n`);
    socket.write(body);
    return parseAnswer(await answer);
  } catch (e) {
    if (request.deadline.signal.aborted) throw deadlineError(request.step, host);
    if (e instanceof PluginError) throw e;
    throw fail(`request failed: ${(e as Error).message ?? e}`, e);
  } finally {
    request.deadline.signal.removeEventListener("abort", abort);
    socket?.destroy();
  }
}
