/**
 * OCIR's token endpoint, `GET https://<registry host>/20180419/docker/token`, in its two roles:
 * - signed with a security token (`keyId="ST$<jwt>"`): issues a docker token (GetAccessToken);
 * - with `Basic BEARER_TOKEN:<docker token>` (a docker client using it as the Bearer realm):
 *   issues a Distribution access token for the scopes the emulated IAM policy allows.
 */
import { importJWK, type JWK, jwtVerify, SignJWT } from "jose";
import type { InstanceIds } from "./pki.ts";
import { TOKEN_ISSUER, withHost } from "./auth.ts";
import { type Access, parseScopes, type RegistryTokens } from "./registry.ts";
import { parseSignatureHeader, SignatureError, verifySignature } from "./verify.ts";
import { dockerError, json, ociReject, Rejection } from "./util.ts";

/** Issuer of the emulator's docker tokens. */
export const DOCKER_TOKEN_ISSUER = "ocir-emulator";

/** A repository as the policy sees it. */
export interface Repo {
  namespace: string;
  name: string;
}

/**
 * Who asks, as the emulated IAM sees it: an instance (instance principal), a workload (an OKE
 * Workload Identity session token) or a federated service account (a UPST/RPST from an identity
 * domain). Workloads and federated accounts carry their service account.
 */
export interface Principal extends InstanceIds {
  type: "instance" | "workload" | "federated";
  namespace?: string;
  serviceAccount?: string;
  clusterId?: string;
  tokenType?: "upst" | "rpst";
}

/** The emulated IAM policy: may `who` do `action` ("pull", "push", …) on `repo`? */
export type Policy = (who: Principal, repo: Repo, action: string) => boolean;

/**
 * The principal a session token speaks for, from the claims the emulator's issuers write (the
 * plugin never reads them: session tokens are opaque to it).
 */
export function principalOf(claims: Record<string, unknown>): Principal {
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  if (claims.ptype === "workload") {
    return {
      type: "workload",
      tenancy: text(claims.res_tenant),
      compartment: text(claims.res_compartment),
      instanceId: "",
      namespace: text(claims.res_namespace),
      serviceAccount: text(claims.res_service_account),
      clusterId: text(claims.res_cluster_id),
    };
  }
  if (claims.ptype === "user" || claims.ptype === "resource") {
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(text(claims.ext_sub));
    return {
      type: "federated",
      tenancy: text(claims.tenant),
      compartment: "",
      instanceId: "",
      namespace: m?.[1] ?? "",
      serviceAccount: m?.[2] ?? "",
      tokenType: claims.ptype === "user" ? "upst" : "rpst",
    };
  }
  return {
    type: "instance",
    tenancy: text(claims["opc-tenant"] ?? claims.tenant),
    compartment: text(claims["opc-compartment"]),
    instanceId: text(claims["opc-instance"] ?? claims.sub),
  };
}

/** What the token endpoint needs. */
export interface OcirState {
  /** Verifies security tokens (the auth service's public key). */
  authPublicKey: CryptoKey;
  /** Signs docker tokens. */
  keys: CryptoKeyPair;
  dockerTokenTtl: number;
  /** Leave `expires_in` out of the answer (Distribution's token spec makes it optional). */
  omitExpiresIn?: boolean;
  /** The realm domain whose auth service issued a security token (by jti), if it was us. */
  tokenRealm(jti: string): string | undefined;
  policy: Policy;
  registry: RegistryTokens;
}

/** Which token was issued, for the counters. */
export interface TokenResult {
  response: Response;
  kind: "docker" | "registry";
  /** Scopes the policy refused, if any (the answer still succeeds, with less access). */
  reason?: string;
}

/** Lifetime of Distribution access tokens, seconds (Docker Hub's is 300 too). */
const REGISTRY_TOKEN_TTL = 300;

/** Answers `/20180419/docker/token` on host (of realm realmDomain); throws Rejection. */
export function handleToken(
  req: Request,
  host: string,
  realmDomain: string,
  now: number,
  state: OcirState,
): Promise<TokenResult> {
  if (req.method !== "GET") throw ociReject(405, `method ${req.method}`);
  const authorization = req.headers.get("authorization") ?? "";
  if (/^Signature /i.test(authorization)) {
    return dockerToken(req, host, realmDomain, now, state);
  }
  return registryToken(req, host, now, state);
}

async function dockerToken(
  req: Request,
  host: string,
  realmDomain: string,
  now: number,
  state: OcirState,
): Promise<TokenResult> {
  const url = new URL(req.url);
  const reject = (reason: string) => ociReject(401, reason);
  let params;
  try {
    params = parseSignatureHeader(req.headers.get("authorization"));
  } catch (e) {
    throw reject((e as Error).message);
  }
  if (!params.keyId.startsWith("ST$")) throw reject(`keyId is not ST$<security token>`);
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(params.keyId.slice(3), state.authPublicKey, {
      issuer: TOKEN_ISSUER,
      algorithms: ["RS256"],
      currentDate: new Date(now),
    }));
  } catch (e) {
    throw reject(`security token: ${(e as Error).message}`);
  }
  const issuedIn = state.tokenRealm(String(claims.jti));
  if (issuedIn !== realmDomain) {
    throw reject(`security token was issued in realm ${issuedIn ?? "unknown"}, not ${realmDomain}`);
  }
  const jwk = typeof claims.jwk === "string" ? JSON.parse(claims.jwk) : claims.jwk;
  let sessionKey: CryptoKey;
  try {
    sessionKey = await importJWK({ ...(jwk as JWK), alg: "RS256" }, "RS256") as CryptoKey;
  } catch {
    throw reject("security token has no usable jwk");
  }
  try {
    await verifySignature(
      { method: req.method, target: url.pathname + url.search, headers: withHost(req) },
      params,
      sessionKey,
      { required: ["host"], now },
    );
  } catch (e) {
    if (e instanceof SignatureError) throw reject(e.message);
    throw e;
  }
  const who = principalOf(claims);
  const iat = Math.floor(now / 1000);
  const token = await new SignJWT({ ...who, host })
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(DOCKER_TOKEN_ISSUER)
    .setSubject(who.instanceId || `${who.namespace}/${who.serviceAccount}`)
    .setAudience(host)
    .setJti(crypto.randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + state.dockerTokenTtl)
    .sign(state.keys.privateKey);
  return {
    response: json(200, {
      token,
      access_token: token,
      scope: "",
      ...(state.omitExpiresIn ? {} : { expires_in: state.dockerTokenTtl }),
    }),
    kind: "docker",
  };
}

async function registryToken(
  req: Request,
  host: string,
  now: number,
  state: OcirState,
): Promise<TokenResult> {
  const url = new URL(req.url);
  const reject = (reason: string, message = reason) =>
    new Rejection(dockerError(401, "UNAUTHORIZED", message), reason);
  const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(req.headers.get("authorization") ?? "");
  if (!m) throw reject("no credentials", "authentication required");
  let user = "", password = "";
  try {
    const decoded = new TextDecoder().decode(Uint8Array.fromBase64(m[1]));
    const colon = decoded.indexOf(":");
    if (colon >= 0) [user, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
  } catch {
    // fall through to the user check
  }
  if (user !== "BEARER_TOKEN") {
    throw reject(`user "${user}" is not BEARER_TOKEN`, "invalid username/password");
  }
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(password, state.keys.publicKey, {
      issuer: DOCKER_TOKEN_ISSUER,
      audience: host,
      algorithms: ["RS256"],
      currentDate: new Date(now),
    }));
  } catch (e) {
    throw reject(`docker token: ${(e as Error).message}`, "invalid username/password");
  }
  const service = url.searchParams.get("service");
  if (service !== null && service !== host) {
    throw reject(`service ${service} is not this registry (${host})`);
  }
  const text = (v: unknown) => (typeof v === "string" ? v : undefined);
  const who: Principal = {
    type: (text(claims.type) ?? "instance") as Principal["type"],
    tenancy: String(claims.tenancy),
    compartment: String(claims.compartment),
    instanceId: String(claims.instanceId),
    namespace: text(claims.namespace),
    serviceAccount: text(claims.serviceAccount),
    clusterId: text(claims.clusterId),
    tokenType: text(claims.tokenType) as Principal["tokenType"],
  };
  const granted: Access[] = [];
  const denied: string[] = [];
  for (const want of parseScopes(url.searchParams.getAll("scope"))) {
    if (want.type !== "repository") continue; // e.g. registry:catalog:* is never granted
    const slash = want.name.indexOf("/");
    const repo = slash < 0
      ? { namespace: "", name: want.name }
      : { namespace: want.name.slice(0, slash), name: want.name.slice(slash + 1) };
    const actions = want.actions.filter((a) => state.policy(who, repo, a));
    if (actions.length > 0) granted.push({ ...want, actions });
    const refused = want.actions.filter((a) => !actions.includes(a));
    if (refused.length > 0) denied.push(`${want.type}:${want.name}:${refused.join(",")}`);
  }
  const exp = Math.min(REGISTRY_TOKEN_TTL, Number(claims.exp) - Math.floor(now / 1000));
  const subject = who.instanceId || `${who.namespace}/${who.serviceAccount}`;
  const token = await state.registry.mint(host, granted, subject, exp, now);
  return {
    response: json(200, { token, access_token: token, expires_in: exp }),
    kind: "registry",
    reason: denied.length > 0 ? `policy denied ${denied.join(" ")}` : undefined,
  };
}
