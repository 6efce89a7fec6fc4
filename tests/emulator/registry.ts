/**
 * The Docker registry side of an OCIR host: Distribution access tokens (the JWT format of
 * Distribution 2.8's token auth, signed by the registry token CA with an x5c header), the `/v2/`
 * Bearer challenge, and reverse proxying `/v2/` to a real registry when one is attached.
 */
import http from "node:http";
import { Readable } from "node:stream";
import { jwtVerify, SignJWT } from "jose";
import type { Issued } from "./pki.ts";
import { dockerError, encodeBase64, json } from "./util.ts";

/** One `access` claim entry of a Distribution token. */
export interface Access {
  type: string;
  name: string;
  actions: string[];
}

/**
 * Parses `scope` query values (`repository:ns/repo:pull,push`, possibly several per value,
 * space separated) into access requests; merges repeats of the same resource.
 */
export function parseScopes(values: string[]): Access[] {
  const byKey = new Map<string, Access>();
  for (const scope of values.flatMap((v) => v.split(" ")).filter((s) => s !== "")) {
    const first = scope.indexOf(":");
    const last = scope.lastIndexOf(":");
    if (first < 0 || last === first) continue; // not type:name:actions
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const actions = scope.slice(last + 1).split(",").filter((a) => a !== "");
    const key = `${type}:${name}`;
    const entry = byKey.get(key) ?? { type, name, actions: [] };
    entry.actions = [...new Set([...entry.actions, ...actions])];
    byKey.set(key, entry);
  }
  return [...byKey.values()];
}

/** Parses a scope string (or takes entries as they are) for minting. */
export function toAccess(access: Access[] | string): Access[] {
  return typeof access === "string" ? parseScopes([access]) : access;
}

/** Mints and checks Distribution access tokens. */
export class RegistryTokens {
  constructor(readonly ca: Issued, readonly issuer: string) {}

  /** The CA certificate PEM, for Distribution's `auth.token.rootcertbundle`. */
  get caPem(): string {
    return this.ca.cert.toString("pem") + "\n";
  }

  /**
   * A token as Distribution 2.8 verifies it: RS256, `x5c` of standard base64 DER (the CA itself
   * is the signer, which Distribution accepts when it is in the bundle), `iss`, `aud` a string,
   * integer `exp`, and the `access` entries.
   */
  mint(host: string, access: Access[], sub: string, ttlSec: number, now: number): Promise<string> {
    const iat = Math.floor(now / 1000);
    return new SignJWT({ access })
      .setProtectedHeader({
        alg: "RS256",
        typ: "JWT",
        x5c: [encodeBase64(new Uint8Array(this.ca.cert.rawData))],
      })
      .setIssuer(this.issuer)
      .setAudience(host)
      .setSubject(sub)
      .setJti(crypto.randomUUID())
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttlSec)
      .sign(this.ca.keys.privateKey);
  }

  /** The access a token grants on host, or an error message when it is not valid there. */
  async check(token: string, host: string, now: number): Promise<Access[] | string> {
    try {
      const { payload } = await jwtVerify(token, this.ca.keys.publicKey, {
        issuer: this.issuer,
        audience: host,
        algorithms: ["RS256"],
        currentDate: new Date(now),
      });
      return (payload.access as Access[] | undefined) ?? [];
    } catch (e) {
      return `invalid token: ${(e as Error).message}`;
    }
  }
}

/** What `/v2/` handling needs. */
export interface V2State {
  tokens: RegistryTokens;
  /** `http://127.0.0.1:PORT` of a real registry serving this host, if attached. */
  upstream?: string;
}

/** Result of a `/v2/` request: the answer and, for refusals, why. */
export interface V2Result {
  response: Response;
  reason?: string;
}

/**
 * Serves `/v2/…` on an OCIR host: forwarded to the attached registry if there is one, else a
 * token check with the Bearer challenge (401), `{}` for `/v2/` and 404 for repository paths.
 */
export async function handleV2(
  req: Request,
  host: string,
  now: number,
  state: V2State,
): Promise<V2Result> {
  if (state.upstream) return { response: await forward(req, host, state.upstream) };
  const url = new URL(req.url);
  const repo = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname)?.[1];
  const action = ["GET", "HEAD"].includes(req.method) ? "pull" : "pull,push";
  const scope = repo ? `repository:${repo}:${action}` : undefined;
  const challenge = (error?: string) => {
    const parts = [
      `realm="https://${host}/20180419/docker/token"`,
      `service="${host}"`,
      ...(scope ? [`scope="${scope}"`] : []),
      ...(error ? [`error="${error}"`] : []),
    ];
    return { "www-authenticate": `Bearer ${parts.join(",")}`, ...API_VERSION };
  };
  const m = /^Bearer ([^ ]+)$/i.exec(req.headers.get("authorization") ?? "");
  if (!m) {
    return {
      response: dockerError(401, "UNAUTHORIZED", "authentication required", challenge()),
      reason: "no Bearer token",
    };
  }
  const access = await state.tokens.check(m[1], host, now);
  if (typeof access === "string") {
    return {
      response: dockerError(
        401,
        "UNAUTHORIZED",
        "authentication required",
        challenge("invalid_token"),
      ),
      reason: access,
    };
  }
  if (!repo) return { response: json(200, {}, API_VERSION) };
  const granted = access.find((a) => a.type === "repository" && a.name === repo)?.actions ?? [];
  const needed = action.split(",");
  if (!needed.every((a) => granted.includes(a) || granted.includes("*"))) {
    return {
      response: dockerError(
        401,
        "UNAUTHORIZED",
        "authentication required",
        challenge("insufficient_scope"),
      ),
      reason: `insufficient scope for ${scope}`,
    };
  }
  return {
    response: dockerError(404, "NAME_UNKNOWN", "no registry attached to this host", API_VERSION),
    reason: "no upstream registry",
  };
}

const API_VERSION = { "docker-distribution-api-version": "registry/2.0" };
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Forwards a request to the upstream registry keeping `Host` and adding
 * `X-Forwarded-Proto: https` (else Distribution writes http:// upload locations). node:http is
 * used because Deno's fetch does not let a caller set `Host`.
 */
function forward(req: Request, host: string, upstream: string): Promise<Response> {
  const url = new URL(req.url);
  const target = new URL(upstream);
  const headers: Record<string, string> = {};
  req.headers.forEach((value, name) => {
    if (!HOP_BY_HOP.has(name)) headers[name] = value;
  });
  headers.host = host;
  headers["x-forwarded-proto"] = "https";
  return new Promise((resolve, reject) => {
    const out = http.request({
      hostname: target.hostname,
      port: Number(target.port),
      method: req.method,
      path: url.pathname + url.search,
      headers,
    }, (res) => {
      const h = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (HOP_BY_HOP.has(name) || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) h.append(name, v);
      }
      const status = res.statusCode ?? 502;
      const empty = req.method === "HEAD" || status === 204 || status === 304;
      if (empty) res.resume();
      const body = empty ? null : Readable.toWeb(res) as ReadableStream<Uint8Array>;
      resolve(new Response(body, { status, headers: h }));
    });
    out.on("error", reject);
    if (req.body) Readable.fromWeb(req.body as never).pipe(out);
    else out.end();
  });
}
