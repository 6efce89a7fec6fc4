/**
 * A strict stand-in for the parts of OCI a kubelet credential provider talks to: IMDS v2 on
 * plain HTTP loopback, and the auth service and OCIR under their real host names over HTTPS,
 * reached through an HTTP CONNECT proxy. A plugin process needs only `emu.env`.
 *
 * ```ts
 * const emu = await startEmulator();
 * // run the plugin with emu.env …
 * await emu.close();
 * ```
 */
import { exportJWK, SignJWT } from "jose";
import { handleFederation, TOKEN_ISSUER } from "./auth.ts";
import {
  Cluster,
  type ClusterOptions,
  type ServiceAccount,
  type WorkloadClaims,
} from "./cluster.ts";
import { type FederatedSubject, handleTokenExchange, type Trust } from "./idcs.ts";
import { type Fault, Faults, type Service } from "./faults.ts";
import { type HostEntry, regionHosts, type RegionInfo, resolveRegion } from "./hosts.ts";
import { handleImds } from "./imds.ts";
import { handleToken, type Policy, type Principal, type Repo } from "./ocir.ts";
import {
  instanceCas,
  type InstanceIds,
  instanceLeaf,
  type Issued,
  type Leaf,
  type LeafOptions,
  rsaKeyPair,
  selfSignedCa,
  serviceKeys,
  tlsMaterial,
} from "./pki.ts";
import { connectProxy, Relay, relayListener } from "./proxy.ts";
import { type Access, handleV2, RegistryTokens, toAccess } from "./registry.ts";
import { aborted, httpDate, ociError, Rejection, sleep } from "./util.ts";

export type {
  Access,
  Cluster,
  ClusterOptions,
  Fault,
  InstanceIds,
  Policy,
  Principal,
  RegionInfo,
  Repo,
  ServiceAccount,
  Trust,
};

/** A per-workload grant: `Allow any-user to read repos … where request.principal.namespace = …`. */
export interface WorkloadGrant {
  /** Kubernetes namespace and service account of the principal. */
  namespace: string;
  serviceAccount: string;
  /** Repository name under emu.namespace, e.g. "team-a/app". */
  repository: string;
  /** Which principal types the statement covers (default both). */
  types?: ("workload" | "federated")[];
}

/** Start-up options; every one has a default. */
export interface EmulatorOptions {
  /** The instance's home region id. Default "us-ashburn-1". */
  region?: string;
  /** Its realm domain. Default: from the region table, else "oraclecloud.com". */
  realmDomain?: string;
  /** Region key, for regions not in the table (dedicated regions), e.g. "DRX". */
  regionKey?: string;
  /** Realm key, when the realm domain does not tell it. */
  realmKey?: string;
  /** Security token lifetime, seconds. Default 1200. */
  tokenTtl?: number;
  /** OCIR docker token `expires_in`, seconds. Default 3600. */
  dockerTokenTtl?: number;
  /** true: OCIR's docker token answer has no `expires_in` (the token's `exp` still says it). */
  omitExpiresIn?: boolean;
  /** The security token's `tenant` claim, to differ from the certificate's tenancy. */
  tenantClaim?: string;
  /** false: `instance/regionInfo/` answers 404 (older IMDS). Default true. */
  regionInfo?: boolean;
  /** Leaf subject OUs in one multi-valued RDN (like real certificates). Default true. */
  multiValuedRdn?: boolean;
  /** "opc-tenant" (default) or "opc-identity". */
  tenantPrefix?: "opc-tenant" | "opc-identity";
  /** More regions whose hosts are served (cross-region, other realms, dedicated regions). */
  extraRegions?: {
    regionId: string;
    realmDomain?: string;
    regionKey?: string;
    realmKey?: string;
  }[];
  /** The loopback address IMDS listens on: "::1" stands in for IMDS's IPv6 address. Default "127.0.0.1". */
  imdsHostname?: string;
  /** Base port: IMDS on it, the proxy on port+1. Default 0 (random ports). */
  port?: number;
  /** Called as each request is answered (the CLI logs with it). */
  onRequest?: (entry: RequestLogEntry) => void;
}

/** One line of the request log. */
export interface RequestLogEntry {
  service: "imds" | "auth" | "ocir" | "idcs" | "proxy";
  method: string;
  /** Host name (with port for IMDS; `host:port` asked of the proxy). */
  host: string;
  /** Path without the query. */
  path: string;
  /** Query string without `?`, when there is one. */
  query?: string;
  /** Status answered; 0 while pending, and for hung or dropped requests. */
  status: number;
  /** When the request arrived, ms since the epoch. */
  at: number;
  /** Why a request was refused, or which fault answered it. */
  reason?: string;
}

/** Counts of successful issuances. */
export interface Counters {
  /** IMDS answers with status 200. */
  imds: number;
  /** Security tokens issued. */
  federations: number;
  /** OCIR docker tokens issued. */
  dockerTokens: number;
  /** Distribution access tokens issued by the realm. */
  registryTokens: number;
  /** Session tokens issued to workloads (proxymux) and by the identity domain's exchange. */
  workloadTokens: number;
}

/** Environment for a plugin process. */
export interface EmulatorEnv {
  OCI_METADATA_BASE_URL: string;
  HTTPS_PROXY: string;
  NO_PROXY: string;
  DENO_CERT: string;
  [name: string]: string;
}

/** A running emulator. */
export interface Emulator {
  /** Environment to pass to a plugin process. */
  readonly env: EmulatorEnv;
  /** The instance's OCIDs. */
  readonly instance: InstanceIds;
  /** The tenancy's object storage / registry namespace. */
  readonly namespace: string;
  /** The home region. */
  readonly region: RegionInfo;
  /** Every host served over HTTPS. */
  readonly hosts: string[];
  /** The home region's main registry host (`iad.ocir.io` style in oc1, else `ocir.<region>.oci.<domain>`). */
  readonly registryHost: string;
  /** Path of the TLS CA PEM (same as env.DENO_CERT). */
  readonly caFile: string;
  /** The current leaf certificate, PEM. */
  readonly leafCertPem: string;
  /** Every request, in arrival order. */
  readonly requests: RequestLogEntry[];
  /** Every `host:port` asked of the CONNECT proxy, refused ones included. */
  readonly connects: string[];
  readonly counters: Counters;
  /** The session public key (base64 SPKI) of every security token issued, in order. */
  readonly sessionKeys: string[];
  /** PEM of the CA that signs Distribution access tokens (`auth.token.rootcertbundle`). */
  readonly registryTokenCa: string;
  /** Path of a file holding registryTokenCa. */
  readonly registryTokenCaFile: string;
  /** `iss` of Distribution access tokens (`auth.token.issuer`). */
  readonly registryIssuer: string;
  /** Sets the fault of an endpoint ("imds", "imds:<path suffix>", "auth", "ocir", …). */
  fault(endpoint: string, fault: Fault): void;
  /** Removes every fault (not latency()). */
  clearFaults(): void;
  /** A new leaf certificate and key (new fingerprint), same OCIDs. */
  rotateLeaf(): Promise<void>;
  /** A leaf certificate (same key) whose notAfter is in the past. */
  expireLeaf(): Promise<void>;
  /** Replaces the IAM policy consulted by the registry realm. */
  setPolicy(policy: Policy): void;
  /** Per-request round-trip latency by service, ms (absent = 0). */
  latency(ms: { imds?: number; auth?: number; ocir?: number }): void;
  /** An admin Distribution token for host (e.g. "repository:ns/app:pull,push"), valid 1 h. */
  mintRegistryToken(host: string, access: Access[] | string): Promise<string>;
  /** Reverse-proxies `https://<host>/v2/…` to a registry at `http://127.0.0.1:PORT` (null: stop). */
  setRegistryUpstream(host: string, url: string | null): void;
  /** The identity domain's host (`https://<host>/oauth2/v1/token`). */
  readonly identityDomainHost: string;
  /** Starts (once) the emulated cluster: service-account issuer and proxymux. */
  startCluster(opts?: ClusterOptions): Promise<Cluster>;
  /** Grants a workload principal `read repos` on one repository (OCIR per-workload policy). */
  grantWorkload(grant: WorkloadGrant): void;
  /** Identity Propagation Trusts of the identity domain (none at first). */
  readonly trusts: Trust[];
  /** Whether the workers' dynamic group may exchange tokens at the identity domain (default true). */
  allowTokenExchange: boolean;
  /** Stops every server and removes the temporary files. */
  close(): Promise<void>;
}

const OCID_CHARS = "abcdefghijklmnopqrstuvwxyz234567";

function ocid(kind: string, realm: string, region = ""): string {
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(52)), (b) => OCID_CHARS[b % 32]);
  return `ocid1.${kind}.${realm}.${region}.aaaaaaaa${rand.join("")}`;
}

/** Starts an emulator; see EmulatorOptions for the defaults. */
export async function startEmulator(opts: EmulatorOptions = {}): Promise<Emulator> {
  const region = resolveRegion({
    regionId: opts.region ?? "us-ashburn-1",
    realmDomain: opts.realmDomain,
    regionKey: opts.regionKey,
    realmKey: opts.realmKey,
  });
  const entries = [region, ...(opts.extraRegions ?? []).map(resolveRegion)].flatMap(regionHosts);
  const idcsHex = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  entries.push({
    host: `idcs-${idcsHex}.identity.${region.realmDomain}`,
    service: "idcs",
    region,
  });
  const hosts = new Map(entries.map((e) => [e.host, e]));
  const instance: InstanceIds = {
    tenancy: ocid("tenancy", region.realmKey),
    compartment: ocid("compartment", region.realmKey),
    instanceId: ocid("instance", region.realmKey, region.regionKey.toLowerCase()),
  };
  const leafOptions: LeafOptions = {
    multiValuedRdn: opts.multiValuedRdn ?? true,
    tenantPrefix: opts.tenantPrefix ?? "opc-tenant",
  };
  const [keys, leafKeys] = await Promise.all([serviceKeys(), rsaKeyPair()]);
  const { root, intermediate } = await instanceCas(keys);
  const leaf = await instanceLeaf(instance, intermediate, leafKeys, leafOptions);
  const tls = await tlsMaterial(keys, [...hosts.keys()]);
  const registryCa = await selfSignedCa("CN=OCIR Emulator Registry Token CA", keys.registry);
  const dir = await Deno.makeTempDir({ prefix: "oci-emulator-" });
  const emu = new OciEmulator(opts, region, hosts, instance, leafOptions, {
    keys,
    root,
    intermediate,
    leaf,
    registryCa,
  }, dir);
  await Deno.writeTextFile(emu.caFile, tls.caPem);
  await Deno.writeTextFile(emu.registryTokenCaFile, emu.registryTokenCa);
  emu.listen(tls.certPem, tls.keyPem, opts.port ?? 0);
  return emu;
}

interface Pki {
  keys: Awaited<ReturnType<typeof serviceKeys>>;
  root: Issued;
  intermediate: Issued;
  leaf: Leaf;
  registryCa: Issued;
}

class OciEmulator implements Emulator {
  readonly requests: RequestLogEntry[] = [];
  readonly connects: string[] = [];
  readonly counters: Counters = {
    imds: 0,
    federations: 0,
    dockerTokens: 0,
    registryTokens: 0,
    workloadTokens: 0,
  };
  readonly sessionKeys: string[] = [];
  readonly trusts: Trust[] = [];
  allowTokenExchange = true;
  #grants: WorkloadGrant[] = [];
  /** Extra authorities the proxy tunnels (proxymux), to their loopback port. */
  #tunnels = new Map<string, number>();
  #cluster?: Promise<Cluster>;
  readonly namespace = "emutenancy";
  readonly registryIssuer = "ocir-emulator-registry";
  readonly caFile: string;
  readonly registryTokenCaFile: string;
  env!: EmulatorEnv;
  #faults = new Faults();
  #latency: Record<Service, number> = { imds: 0, auth: 0, ocir: 0, idcs: 0 };
  #policy: Policy;
  #upstreams = new Map<string, string>();
  /** Realm domain of the auth host that issued each security token, by jti. */
  #tokenRealms = new Map<string, string>();
  #tokens: RegistryTokens;
  #relay = new Relay();
  #closing = new AbortController();
  #servers: Deno.HttpServer[] = [];
  #listeners: Deno.Listener[] = [];

  constructor(
    readonly opts: EmulatorOptions,
    readonly region: RegionInfo,
    readonly hostMap: Map<string, HostEntry>,
    readonly instance: InstanceIds,
    readonly leafOptions: LeafOptions,
    readonly pki: Pki,
    readonly dir: string,
  ) {
    this.caFile = `${dir}/tls-ca.pem`;
    this.registryTokenCaFile = `${dir}/registry-token-ca.pem`;
    this.#tokens = new RegistryTokens(pki.registryCa, this.registryIssuer);
    this.#policy = (who, repo, action) =>
      who.type === "instance" && who.tenancy === instance.tenancy &&
      who.compartment === instance.compartment &&
      repo.namespace === this.namespace && action === "pull";
  }

  /** The per-workload statements: read repos for one service account, in our tenancy. */
  #workloadPolicy(who: Principal, repo: Repo, action: string): boolean {
    if (who.type === "instance" || action !== "pull" || who.tenancy !== this.instance.tenancy) {
      return false;
    }
    return this.#grants.some((g) =>
      (g.types ?? ["workload", "federated"]).includes(who.type as "workload") &&
      g.namespace === who.namespace && g.serviceAccount === who.serviceAccount &&
      repo.namespace === this.namespace && repo.name === g.repository &&
      (who.type !== "workload" || who.clusterId === this.#clusterId)
    );
  }

  readonly #clusterId = ocid("cluster", "oc1", "iad");

  get identityDomainHost(): string {
    return [...this.hostMap.values()].find((e) => e.service === "idcs")!.host;
  }

  grantWorkload(grant: WorkloadGrant): void {
    this.#grants.push(grant);
  }

  startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
    this.#cluster ??= Cluster.start(this.dir, this.#clusterId, {
      issue: (who, key, now) => this.#issueWorkload(who, key, now),
    }, opts).then((cluster) => {
      // The proxy reaches proxymux too, as a node's proxy would reach the API endpoint.
      const { host, port } = new URL(cluster.proxymuxUrl);
      this.#tunnels.set(host, Number(port));
      return cluster;
    });
    return this.#cluster;
  }

  /** Signs a session token as the auth service, registered in the home realm for OCIR. */
  async #sessionToken(
    claims: Record<string, unknown>,
    subject: string,
    sessionKey: CryptoKey,
    now: number,
    ttl: number,
  ): Promise<string> {
    const jti = crypto.randomUUID();
    const iat = Math.floor(now / 1000);
    const jwk = await exportJWK(sessionKey);
    const token = await new SignJWT({
      ...claims,
      jwk: { kid: jti, kty: jwk.kty, n: jwk.n, e: jwk.e, alg: "RS256", use: "sig" },
    })
      .setProtectedHeader({ alg: "RS256", typ: "JWT" })
      .setIssuer(TOKEN_ISSUER)
      .setSubject(subject)
      .setAudience("oci")
      .setJti(jti)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ttl)
      .sign(this.pki.keys.auth.privateKey);
    this.#tokenRealms.set(jti, this.region.realmDomain);
    this.counters.workloadTokens++;
    return token;
  }

  #issueWorkload(who: WorkloadClaims, sessionKey: CryptoKey, now: number): Promise<string> {
    return this.#sessionToken(
      {
        ptype: "workload",
        res_type: "workload",
        res_tenant: this.instance.tenancy,
        res_compartment: this.instance.compartment,
        res_namespace: who.namespace,
        res_service_account: who.serviceAccount,
        res_cluster_id: who.clusterId,
      },
      `${who.namespace}/${who.serviceAccount}`,
      sessionKey,
      now,
      this.opts.tokenTtl ?? 1200,
    );
  }

  #issueFederated(subject: FederatedSubject, sessionKey: CryptoKey, now: number): Promise<string> {
    const rpst = subject.tokenType === "rpst";
    return this.#sessionToken(
      {
        ptype: rpst ? "resource" : "user",
        ...(rpst ? { res_type: "k8sworkload" } : {}),
        tenant: this.instance.tenancy,
        ext_iss: subject.issuer,
        ext_sub: subject.subject,
      },
      subject.subject,
      sessionKey,
      now,
      rpst ? 12 * 3600 : 3600,
    );
  }

  get hosts(): string[] {
    return [...this.hostMap.keys()];
  }

  get registryHost(): string {
    return [...this.hostMap.values()].find((e) => e.service === "ocir" && e.region === this.region)!
      .host;
  }

  get leafCertPem(): string {
    return this.pki.leaf.cert.toString("pem") + "\n";
  }

  get registryTokenCa(): string {
    return this.#tokens.caPem;
  }

  /** Starts IMDS (behind a relay, so drops can cut it), the TLS server and the proxy. */
  listen(certPem: string, keyPem: string, basePort: number): void {
    const quiet = { hostname: "127.0.0.1", port: 0, onListen() {} };
    const imds = Deno.serve(quiet, (req, info) => this.#imds(req, info));
    const https = Deno.serve(
      { ...quiet, cert: certPem, key: keyPem },
      (req, info) => this.#https(req, info),
    );
    this.#servers.push(imds, https);
    const imdsHost = this.opts.imdsHostname ?? "127.0.0.1";
    const imdsFront = Deno.listen({ hostname: imdsHost, port: basePort });
    const proxy = Deno.listen({ hostname: "127.0.0.1", port: basePort ? basePort + 1 : 0 });
    this.#listeners.push(imdsFront, proxy);
    relayListener(imdsFront, this.#relay, imds.addr.port);
    connectProxy(proxy, {
      allow: (authority) =>
        (authority.endsWith(":443") && this.hostMap.has(authority.slice(0, -4))) ||
        this.#tunnels.has(authority),
      targetPort: (authority) => this.#tunnels.get(authority) ?? https.addr.port,
      relay: this.#relay,
      onConnect: (e) => {
        this.connects.push(e.authority);
        this.#log({
          service: "proxy",
          method: "CONNECT",
          host: e.authority,
          path: "",
          status: e.status,
          at: Date.now(),
          ...(e.allowed ? {} : { reason: "host not served by the emulator" }),
        });
      },
    });
    this.env = {
      OCI_METADATA_BASE_URL: `http://${imdsHost.includes(":") ? `[${imdsHost}]` : imdsHost}:${
        (imdsFront.addr as Deno.NetAddr).port
      }/opc/v2`,
      HTTPS_PROXY: `http://127.0.0.1:${(proxy.addr as Deno.NetAddr).port}`,
      NO_PROXY: "127.0.0.1,localhost",
      DENO_CERT: this.caFile,
    };
  }

  #log(entry: RequestLogEntry): void {
    this.requests.push(entry);
    this.opts.onRequest?.(entry);
  }

  #imds(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    return this.#serve("imds", req, info, () => {
      const response = handleImds(req, {
        leaf: () => this.pki.leaf,
        intermediate: this.pki.intermediate,
        region: this.region,
        instance: this.instance,
        regionInfo: this.opts.regionInfo ?? true,
      });
      this.counters.imds++;
      return Promise.resolve({ response });
    });
  }

  #https(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(req.url);
    const entry = this.hostMap.get(url.hostname.toLowerCase());
    if (!entry) return Promise.resolve(ociError(421, `${url.hostname} is not served here`));
    if (entry.service === "idcs") {
      return this.#serve("idcs", req, info, async (now) => {
        const { response } = await handleTokenExchange(req, now, {
          authPublicKey: this.pki.keys.auth.publicKey,
          trusts: () => this.trusts,
          mayExchange: (who) =>
            this.allowTokenExchange && who.tenancy === this.instance.tenancy &&
            who.compartment === this.instance.compartment,
          issue: (subject, key, at) => this.#issueFederated(subject, key, at),
        });
        return { response };
      });
    }
    if (entry.service === "auth") {
      return this.#serve("auth", req, info, async (now) => {
        const fed = await handleFederation(req, now, {
          root: () => this.pki.root.cert,
          keys: this.pki.keys.auth,
          tokenTtl: this.opts.tokenTtl ?? 1200,
          tenantClaim: this.opts.tenantClaim,
        });
        this.#tokenRealms.set(fed.jti, entry.region.realmDomain);
        this.counters.federations++;
        this.sessionKeys.push(fed.sessionKey);
        return fed;
      });
    }
    return this.#serve("ocir", req, info, async (now) => {
      if (url.pathname === "/v2" || url.pathname.startsWith("/v2/")) {
        return await handleV2(req, entry.host, now, {
          tokens: this.#tokens,
          upstream: this.#upstreams.get(entry.host),
        });
      }
      if (url.pathname !== "/20180419/docker/token") {
        throw new Rejection(ociError(404, `${url.pathname}: not found`), "unknown path");
      }
      const result = await handleToken(req, entry.host, entry.region.realmDomain, now, {
        authPublicKey: this.pki.keys.auth.publicKey,
        keys: this.pki.keys.ocir,
        dockerTokenTtl: this.opts.dockerTokenTtl ?? 3600,
        omitExpiresIn: this.opts.omitExpiresIn,
        tokenRealm: (jti) => this.#tokenRealms.get(jti),
        policy: (who, repo, action) =>
          this.#policy(who, repo, action) || this.#workloadPolicy(who, repo, action),
        registry: this.#tokens,
      });
      if (result.kind === "docker") this.counters.dockerTokens++;
      else this.counters.registryTokens++;
      return result;
    });
  }

  /**
   * The common path of every request: log, latency and faults, then the service's handler with
   * the service clock (shifted by any clock skew fault); Rejections become their answers.
   */
  async #serve(
    service: Service,
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    handle: (now: number) => Promise<{ response: Response; reason?: string }>,
  ): Promise<Response> {
    const url = new URL(req.url);
    const entry: RequestLogEntry = {
      service,
      method: req.method,
      host: url.host,
      path: url.pathname,
      ...(url.search ? { query: url.search.slice(1) } : {}),
      status: 0,
      at: Date.now(),
    };
    this.requests.push(entry);
    const effect = this.#faults.take(service, url.pathname);
    const signal = this.#closing.signal;
    await sleep(this.#latency[service] + effect.latencyMs, signal);
    const now = () => Date.now() + effect.clockSkewSec * 1000;
    let response: Response;
    let reason: string | undefined;
    if (effect.drop) {
      entry.reason = "fault: drop";
      this.#relay.cut(info.remoteAddr.port);
      this.opts.onRequest?.(entry);
      return new Response(null, { status: 500 });
    } else if (effect.hang) {
      entry.reason = "fault: hang";
      this.opts.onRequest?.(entry);
      await aborted(signal);
      return new Response(null, { status: 503 });
    } else if (effect.redirect !== undefined) {
      response = new Response(null, { status: 307, headers: { location: effect.redirect } });
      reason = "fault: redirect";
    } else if (effect.status !== undefined) {
      response = ociError(effect.status, `injected fault: status ${effect.status}`);
      if (effect.retryAfter !== undefined) {
        response.headers.set("retry-after", String(effect.retryAfter));
      }
      reason = `fault: status ${effect.status}`;
    } else {
      try {
        ({ response, reason } = await handle(now()));
      } catch (e) {
        if (!(e instanceof Rejection)) throw e;
        ({ response, reason } = e);
      }
    }
    if (effect.body !== undefined) {
      response = new Response(effect.body, { status: response.status, headers: response.headers });
      reason = reason ? `${reason}; fault: malformed body` : "fault: malformed body";
    }
    if (service !== "imds") {
      // OCI services answer with their own clock and a request id.
      response.headers.set("date", httpDate(now()));
      response.headers.set("opc-request-id", crypto.randomUUID().replaceAll("-", "").toUpperCase());
    }
    entry.status = response.status;
    if (reason !== undefined) entry.reason = reason;
    this.opts.onRequest?.(entry);
    return response;
  }

  fault(endpoint: string, fault: Fault): void {
    this.#faults.set(endpoint, fault);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  async rotateLeaf(): Promise<void> {
    const keys = await rsaKeyPair();
    this.pki.leaf = await instanceLeaf(
      this.instance,
      this.pki.intermediate,
      keys,
      this.leafOptions,
    );
  }

  async expireLeaf(): Promise<void> {
    this.pki.leaf = await instanceLeaf(this.instance, this.pki.intermediate, this.pki.leaf.keys, {
      ...this.leafOptions,
      expired: true,
    });
  }

  setPolicy(policy: Policy): void {
    this.#policy = policy;
  }

  latency(ms: { imds?: number; auth?: number; ocir?: number }): void {
    this.#latency = { imds: ms.imds ?? 0, auth: ms.auth ?? 0, ocir: ms.ocir ?? 0, idcs: 0 };
  }

  mintRegistryToken(host: string, access: Access[] | string): Promise<string> {
    return this.#tokens.mint(host, toAccess(access), "admin", 3600, Date.now());
  }

  setRegistryUpstream(host: string, url: string | null): void {
    if (this.hostMap.get(host)?.service !== "ocir") {
      throw new Error(`${host} is not a registry host here`);
    }
    if (url === null) this.#upstreams.delete(host);
    else this.#upstreams.set(host, url);
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    for (const l of this.#listeners) l.close();
    this.#relay.cutAll();
    await Promise.all(this.#servers.map((s) => s.shutdown()));
    if (this.#cluster) await (await this.#cluster).close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
