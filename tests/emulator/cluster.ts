/**
 * A Kubernetes cluster as per-workload identity sees it: the service-account issuer (its keys,
 * JWKS, and bound tokens minted the way the API server mints them for kubelet) and OKE's
 * proxymux endpoint (`POST /resourcePrincipalSessionTokens`, TLS with the cluster's own CA),
 * which trades a service-account token for a workload session token (WORKLOAD-IDENTITY.md §3).
 */
import * as x509 from "@peculiar/x509";
import { createLocalJWKSet, exportJWK, type JWK, jwtVerify, SignJWT } from "jose";
import { type Issued, pkcs8Pem, rsaKeyPair, selfSignedCa } from "./pki.ts";
import { importRsaSpki } from "./verify.ts";
import { ociError, ociReject, Rejection } from "./util.ts";

x509.cryptoProvider.set(crypto);

/** A service account as the API server knows it. */
export interface ServiceAccount {
  namespace: string;
  name: string;
  uid: string;
}

/** How to mint a service-account token; defaults make the token kubelet would send. */
export interface MintOptions {
  /** `aud`; default the API server's own (the issuer). */
  audience?: string;
  /** Lifetime, seconds (default 3600; kubelet's minimum is 600). */
  ttl?: number;
  /** Issued this many seconds ago (a negative ttl then makes an expired token). */
  ageSeconds?: number;
  /** Sign with another key than the issuer's (a forged token). */
  forged?: boolean;
  /** `iss`; default the cluster's. */
  issuer?: string;
}

/** A workload principal as proxymux puts it into the session token it issues. */
export interface WorkloadClaims {
  namespace: string;
  serviceAccount: string;
  clusterId: string;
}

/** What proxymux needs from the rest of the emulated cloud. */
export interface ProxymuxIssuer {
  /** Issues a session token bound to `sessionKey` for the workload (signed by the auth service). */
  issue(who: WorkloadClaims, sessionKey: CryptoKey, now: number): Promise<string>;
}

/** Options of the emulated cluster. */
export interface ClusterOptions {
  /** false: proxymux answers 403 (not an enhanced cluster). Default true. */
  enhanced?: boolean;
  /** Audiences proxymux accepts. Default: the API server's own (the issuer). */
  audiences?: string[];
}

const HOUR = 3600_000;

/** The cluster's CA, and a proxymux server certificate for 127.0.0.1 that it signs. */
async function clusterTls(): Promise<{ ca: Issued; certPem: string; keyPem: string }> {
  const [caKeys, serverKeys] = await Promise.all([rsaKeyPair(), rsaKeyPair()]);
  const ca = await selfSignedCa("CN=kubernetes", caKeys);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01",
    subject: "CN=proxymux",
    issuer: ca.cert.subject,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 24 * HOUR),
    signingAlgorithm: caKeys.privateKey.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "ip", value: "127.0.0.1" }]),
    ],
  });
  return {
    ca,
    certPem: cert.toString("pem") + "\n",
    keyPem: await pkcs8Pem(serverKeys.privateKey),
  };
}

/** A running emulated cluster. */
export class Cluster {
  /** The service-account issuer, also the API server's default audience. */
  readonly issuer = "https://kubernetes.default.svc.cluster.local";
  /** Proxymux answers 403 when false. */
  enhanced: boolean;
  /** Audiences proxymux accepts. */
  audiences: string[];
  /** Every proxymux request: status and reason. */
  readonly proxymuxLog: { status: number; reason?: string }[] = [];
  #server?: Deno.HttpServer<Deno.NetAddr>;

  private constructor(
    readonly clusterId: string,
    readonly caPem: string,
    readonly caFile: string,
    readonly keys: CryptoKeyPair,
    readonly jwks: { keys: JWK[] },
    readonly otherKeys: CryptoKeyPair,
    opts: ClusterOptions,
  ) {
    this.enhanced = opts.enhanced ?? true;
    this.audiences = opts.audiences ?? [this.issuer];
  }

  /** Creates the cluster's keys and CA and starts proxymux on 127.0.0.1. */
  static async start(
    dir: string,
    clusterId: string,
    issuer: ProxymuxIssuer,
    opts: ClusterOptions = {},
  ): Promise<Cluster> {
    const [keys, otherKeys, tls] = await Promise.all([rsaKeyPair(), rsaKeyPair(), clusterTls()]);
    const jwk = await exportJWK(keys.publicKey);
    const kid = crypto.randomUUID();
    const caPem = tls.ca.cert.toString("pem") + "\n";
    const caFile = `${dir}/cluster-ca.crt`;
    await Deno.writeTextFile(caFile, caPem);
    const cluster = new Cluster(
      clusterId,
      caPem,
      caFile,
      keys,
      {
        keys: [{ ...jwk, kid, alg: "RS256", use: "sig" }],
      },
      otherKeys,
      opts,
    );
    cluster.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, cert: tls.certPem, key: tls.keyPem, onListen() {} },
      (req) => cluster.#proxymux(req, issuer),
    );
    return cluster;
  }

  /** Proxymux's full URL (the real one listens on port 12250 of the API server endpoint). */
  get proxymuxUrl(): string {
    return `https://127.0.0.1:${this.#server!.addr.port}/resourcePrincipalSessionTokens`;
  }

  /** A bound service-account token, shaped like the ones kubelet requests for a pod. */
  mintServiceAccountToken(sa: ServiceAccount, opts: MintOptions = {}): Promise<string> {
    const iat = Math.floor(Date.now() / 1000) - (opts.ageSeconds ?? 0);
    const kid = this.jwks.keys[0].kid!;
    return new SignJWT({
      "kubernetes.io": {
        namespace: sa.namespace,
        serviceaccount: { name: sa.name, uid: sa.uid },
        pod: { name: `${sa.name}-pod`, uid: crypto.randomUUID() },
      },
    })
      .setProtectedHeader({ alg: "RS256", kid })
      .setIssuer(opts.issuer ?? this.issuer)
      .setSubject(`system:serviceaccount:${sa.namespace}:${sa.name}`)
      .setAudience([opts.audience ?? this.issuer])
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + (opts.ttl ?? 3600))
      .setJti(crypto.randomUUID())
      .sign(opts.forged ? this.otherKeys.privateKey : this.keys.privateKey);
  }

  /**
   * Verifies a service-account token as the API server's authenticator does (signature by the
   * issuer's key, `iss`, one of `audiences`, `exp`/`nbf`) and returns its service account.
   * Throws an Error whose message says what is wrong.
   */
  async verifyServiceAccountToken(
    token: string,
    audiences: string[],
    now: number,
  ): Promise<ServiceAccount> {
    const { payload } = await jwtVerify(token, createLocalJWKSet(this.jwks), {
      issuer: this.issuer,
      audience: audiences,
      algorithms: ["RS256"],
      currentDate: new Date(now),
    });
    const k = payload["kubernetes.io"] as
      | { namespace?: string; serviceaccount?: { name?: string; uid?: string } }
      | undefined;
    const namespace = k?.namespace, name = k?.serviceaccount?.name, uid = k?.serviceaccount?.uid;
    if (
      !namespace || !name || !uid || payload.sub !== `system:serviceaccount:${namespace}:${name}`
    ) {
      throw new Error("not a service-account token");
    }
    return { namespace, name, uid };
  }

  async #proxymux(req: Request, issuer: ProxymuxIssuer): Promise<Response> {
    let status = 200, reason: string | undefined;
    try {
      return await this.#exchange(req, issuer);
    } catch (e) {
      if (!(e instanceof Rejection)) throw e;
      ({ reason } = e);
      status = e.response.status;
      return e.response;
    } finally {
      this.proxymuxLog.push({ status, ...(reason ? { reason } : {}) });
    }
  }

  async #exchange(req: Request, issuer: ProxymuxIssuer): Promise<Response> {
    const now = Date.now();
    const url = new URL(req.url);
    if (url.pathname !== "/resourcePrincipalSessionTokens") {
      throw ociReject(404, `${url.pathname}: not found`);
    }
    if (req.method !== "POST") throw ociReject(405, `method ${req.method}`);
    const m = /^Bearer ([A-Za-z0-9._-]+)$/.exec(req.headers.get("authorization") ?? "");
    if (!m) throw ociReject(401, "no bearer service-account token");
    let sa: ServiceAccount;
    try {
      sa = await this.verifyServiceAccountToken(m[1], this.audiences, now);
    } catch (e) {
      throw ociReject(401, `service-account token refused: ${(e as Error).message}`);
    }
    // The Go SDK reads a 403 as "not an enhanced cluster": workload identity is off here.
    if (!this.enhanced) {
      throw new Rejection(
        ociError(403, "workload identity is only available on enhanced clusters", "NotAuthorized"),
        "not an enhanced cluster",
      );
    }
    if (!(req.headers.get("content-type") ?? "").startsWith("application/json")) {
      throw ociReject(400, "content-type is not application/json");
    }
    let podKey: unknown;
    try {
      ({ podKey } = await req.json());
    } catch {
      throw ociReject(400, "body is not JSON");
    }
    if (typeof podKey !== "string") throw ociReject(400, "podKey missing");
    const b64 = podKey.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
    let sessionKey: CryptoKey;
    try {
      sessionKey = await importRsaSpki(Uint8Array.fromBase64(b64));
    } catch {
      throw ociReject(400, "podKey is not a PEM RSA public key");
    }
    if ((sessionKey.algorithm as RsaHashedKeyAlgorithm).modulusLength < 2048) {
      throw ociReject(400, "podKey is shorter than 2048 bits");
    }
    const token = await issuer.issue(
      { namespace: sa.namespace, serviceAccount: sa.name, clusterId: this.clusterId },
      sessionKey,
      now,
    );
    // The answer is a JSON string whose content is base64 of {"token":"ST$<jwt>"}.
    const inner = new TextEncoder().encode(JSON.stringify({ token: `ST$${token}` }));
    return new Response(JSON.stringify(inner.toBase64()), {
      headers: { "content-type": "application/json" },
    });
  }

  /** Stops proxymux. */
  async close(): Promise<void> {
    await this.#server?.shutdown();
  }
}
