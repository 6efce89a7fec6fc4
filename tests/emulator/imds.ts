/**
 * Instance Metadata Service v2 (http://169.254.169.254/opc/v2 on a real instance): the identity
 * certificate, key and intermediate, and the instance's region facts, with IMDS's refusals.
 */
import type { InstanceIds, Issued, Leaf } from "./pki.ts";
import type { RegionInfo } from "./hosts.ts";
import { json, Rejection } from "./util.ts";

/** What IMDS serves. */
export interface ImdsState {
  leaf(): Leaf;
  intermediate: Issued;
  region: RegionInfo;
  instance: InstanceIds;
  /** false: `instance/regionInfo/` answers 404, as on older IMDS versions. */
  regionInfo: boolean;
}

function text(body: string): Response {
  return new Response(body, { headers: { "content-type": "text/plain" } });
}

function refuse(status: number, reason: string): Rejection {
  return new Rejection(json(status, { code: String(status), message: reason }), reason);
}

/** The instance/region answer: short code for the two oldest regions, else the full id. */
export function regionAnswer(regionId: string): string {
  if (regionId === "us-ashburn-1") return "iad";
  if (regionId === "us-phoenix-1") return "phx";
  return regionId;
}

/** Answers one IMDS request (throws Rejection for refusals). */
export function handleImds(req: Request, state: ImdsState): Response {
  const path = new URL(req.url).pathname;
  if (!path.startsWith("/opc/v2/")) throw refuse(404, `${path}: only /opc/v2/ is served`);
  for (const h of ["forwarded", "x-forwarded-for", "x-forwarded-host"]) {
    if (req.headers.has(h)) throw refuse(400, `request carries ${h}`);
  }
  if (req.headers.get("authorization") !== "Bearer Oracle") {
    throw refuse(401, "missing Authorization: Bearer Oracle");
  }
  if (req.method !== "GET") throw refuse(405, `method ${req.method}`);
  const r = state.region;
  const regionInfo = {
    realmKey: r.realmKey,
    realmDomainComponent: r.realmDomain,
    regionKey: r.regionKey,
    regionIdentifier: r.regionId,
  };
  switch (path.slice("/opc/v2/".length)) {
    case "identity/cert.pem":
      return text(state.leaf().cert.toString("pem") + "\n");
    case "identity/key.pem":
      return text(state.leaf().keyPem);
    case "identity/intermediate.pem":
      return text(state.intermediate.cert.toString("pem") + "\n");
    case "instance/region":
      return text(regionAnswer(r.regionId));
    case "instance/canonicalRegionName":
      return text(r.regionId);
    case "instance/id":
      return text(state.instance.instanceId);
    case "instance/compartmentId":
      return text(state.instance.compartment);
    case "instance/regionInfo":
    case "instance/regionInfo/":
      if (!state.regionInfo) throw refuse(404, "regionInfo disabled (older IMDS)");
      return json(200, regionInfo);
    case "instance":
    case "instance/":
      return json(200, {
        id: state.instance.instanceId,
        compartmentId: state.instance.compartment,
        region: regionAnswer(r.regionId),
        canonicalRegionName: r.regionId,
        ...(state.regionInfo ? { regionInfo } : {}),
      });
    default:
      throw refuse(404, `${path}: no such metadata`);
  }
}
