/**
 * An identity domain's token exchange, `POST https://<domain host>/oauth2/v1/token` (IAM Workload
 * Identity Federation, WORKLOAD-IDENTITY.md §4): a client authenticated by an instance
 * principal's OCI signature trades a Kubernetes service-account JWT, trusted through an Identity
 * Propagation Trust, for a UPST or RPST bound to a session key the client chose.
 */
import { createLocalJWKSet, decodeJwt, importJWK, type JWK, jwtVerify } from "jose";
import { withHost } from "./auth.ts";
import { parseSignatureHeader, SignatureError, verifySignature } from "./verify.ts";
import { importRsaSpki } from "./verify.ts";
import { decodeBase64Strict, json, Rejection } from "./util.ts";
import type { InstanceIds } from "./pki.ts";

/** An Identity Propagation Trust: tokens of this issuer, checked with its JWKS, may be exchanged. */
export interface Trust {
  issuer: string;
  jwks: { keys: JWK[] };
  /** For RPST: the trust allows impersonating `k8sworkload` resources. Default true. */
  k8sworkload?: boolean;
}

/** The subject of an exchanged token, as the emulated IAM sees it. */
export interface FederatedSubject {
  tokenType: "upst" | "rpst";
  /** The service-account token's `sub`, e.g. `system:serviceaccount:ns:name`. */
  subject: string;
  /** Its issuer (propagated as `ext_iss`). */
  issuer: string;
}

/** What the endpoint needs from the rest of the emulated cloud. */
export interface IdcsState {
  /** Verifies the instance principal's security token (the auth service's public key). */
  authPublicKey: CryptoKey;
  /** The configured trusts. */
  trusts(): Trust[];
  /** The policy letting the workers' dynamic group exchange tokens. */
  mayExchange(who: InstanceIds): boolean;
  /** Issues the session token (signed by the auth service) bound to `sessionKey`. */
  issue(subject: FederatedSubject, sessionKey: CryptoKey, now: number): Promise<string>;
}

const TOKEN_TYPES: Record<string, "upst" | "rpst"> = {
  "urn:oci:token-type:oci-upst": "upst",
  "urn:oci:token-type:oci-rpst": "rpst",
};

/** An OAuth 2.0 error answer (RFC 6749 §5.2), the form an identity domain answers in. */
function oauthReject(status: number, error: string, description: string): Rejection {
  return new Rejection(json(status, { error, error_description: description }), description);
}

/** Checks the instance principal's signature and returns the instance, or throws 401. */
async function instancePrincipal(
  req: Request,
  body: Uint8Array<ArrayBuffer>,
  now: number,
  state: IdcsState,
): Promise<InstanceIds> {
  const reject = (why: string) => oauthReject(401, "invalid_client", why);
  let params;
  try {
    params = parseSignatureHeader(req.headers.get("authorization"));
  } catch (e) {
    throw reject(`client authentication: ${(e as Error).message}`);
  }
  if (!params.keyId.startsWith("ST$")) throw reject("keyId is not ST$<security token>");
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(params.keyId.slice(3), state.authPublicKey, {
      algorithms: ["RS256"],
      currentDate: new Date(now),
    }));
  } catch (e) {
    throw reject(`security token: ${(e as Error).message}`);
  }
  if (claims.ptype !== "instance") throw reject("the client is not an instance principal");
  const jwk = typeof claims.jwk === "string" ? JSON.parse(claims.jwk) : claims.jwk;
  const key = await importJWK({ ...(jwk as JWK), alg: "RS256" }, "RS256") as CryptoKey;
  const url = new URL(req.url);
  try {
    await verifySignature(
      { method: req.method, target: url.pathname + url.search, headers: withHost(req), body },
      params,
      key,
      { required: ["host", "content-length", "content-type", "x-content-sha256"], now },
    );
  } catch (e) {
    if (e instanceof SignatureError) throw reject(e.message);
    throw e;
  }
  return {
    tenancy: String(claims["opc-tenant"] ?? claims.tenant),
    compartment: String(claims["opc-compartment"]),
    instanceId: String(claims["opc-instance"] ?? claims.sub),
  };
}

/** Answers the token exchange; throws Rejection with an OAuth error body. */
export async function handleTokenExchange(
  req: Request,
  now: number,
  state: IdcsState,
): Promise<{ response: Response; subject: FederatedSubject }> {
  const url = new URL(req.url);
  if (url.pathname !== "/oauth2/v1/token") {
    throw new Rejection(json(404, { error: "not_found" }), `${url.pathname}: not found`);
  }
  if (req.method !== "POST") {
    throw oauthReject(405, "invalid_request", `method ${req.method}`);
  }
  const body = new Uint8Array(await req.arrayBuffer());
  const who = await instancePrincipal(req, body, now, state);
  if (!state.mayExchange(who)) {
    throw oauthReject(
      401,
      "unauthorized_client",
      "no policy lets this instance's dynamic group exchange tokens",
    );
  }
  if (req.headers.get("content-type") !== "application/x-www-form-urlencoded") {
    throw oauthReject(
      400,
      "invalid_request",
      "content-type is not application/x-www-form-urlencoded",
    );
  }
  const form = new URLSearchParams(new TextDecoder().decode(body));
  const field = (name: string) => {
    const value = form.get(name);
    if (!value) throw oauthReject(400, "invalid_request", `${name} missing`);
    return value;
  };
  if (field("grant_type") !== "urn:ietf:params:oauth:grant-type:token-exchange") {
    throw oauthReject(400, "unsupported_grant_type", `grant_type ${form.get("grant_type")}`);
  }
  const tokenType = TOKEN_TYPES[field("requested_token_type")];
  if (!tokenType) {
    throw oauthReject(
      400,
      "invalid_request",
      `requested_token_type ${form.get("requested_token_type")}`,
    );
  }
  if (field("subject_token_type") !== "jwt") {
    throw oauthReject(400, "invalid_request", "subject_token_type is not jwt");
  }
  if (tokenType === "rpst" && form.get("res_type") !== "k8sworkload") {
    throw oauthReject(400, "invalid_request", "res_type must be k8sworkload for an RPST");
  }
  let sessionKey: CryptoKey;
  try {
    sessionKey = await importRsaSpki(decodeBase64Strict(field("public_key")));
  } catch (e) {
    if (e instanceof Rejection) throw e;
    throw oauthReject(400, "invalid_request", "public_key is not a base64 DER RSA public key");
  }
  if ((sessionKey.algorithm as RsaHashedKeyAlgorithm).modulusLength < 2048) {
    throw oauthReject(400, "invalid_request", "public_key is shorter than 2048 bits");
  }
  const subjectToken = field("subject_token");
  let issuer: unknown;
  try {
    issuer = decodeJwt(subjectToken).iss;
  } catch {
    throw oauthReject(400, "invalid_grant", "subject_token is not a JWT");
  }
  const trust = state.trusts().find((t) => t.issuer === issuer);
  if (!trust) {
    throw oauthReject(400, "invalid_grant", `no identity propagation trust for issuer ${issuer}`);
  }
  if (tokenType === "rpst" && trust.k8sworkload === false) {
    throw oauthReject(400, "invalid_grant", "the trust does not allow impersonating k8sworkload");
  }
  let sub: unknown;
  try {
    ({ payload: { sub } } = await jwtVerify(subjectToken, createLocalJWKSet(trust.jwks), {
      issuer: trust.issuer,
      algorithms: ["RS256"],
      currentDate: new Date(now),
    }));
  } catch (e) {
    throw oauthReject(400, "invalid_grant", `subject_token: ${(e as Error).message}`);
  }
  const subject: FederatedSubject = { tokenType, subject: String(sub), issuer: trust.issuer };
  const token = await state.issue(subject, sessionKey, now);
  return { response: json(200, { token }), subject };
}
