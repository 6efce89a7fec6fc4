/**
 * The official OCI TypeScript SDK (oci-common) as an independent client of the emulator: it
 * federates with instance principals and signs a docker-token request. Run as a subprocess
 * with the emulator's env (Deno reads HTTPS_PROXY and DENO_CERT at start-up); prints one JSON
 * line `{"status", "body", "headers"}` for the docker-token answer.
 *
 *   deno run -A tests/emulator/sdk_probe.ts <federation endpoint> <registry host>
 */
import * as common from "oci-common";

const [federationEndpoint, registryHost] = Deno.args;
const builder = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
builder.metadataBaseUrl = Deno.env.get("OCI_METADATA_BASE_URL")!;
builder.federationEndpoint = federationEndpoint;
const provider = await builder.build();
const signer = new common.DefaultRequestSigner(provider);
const request: common.HttpRequest = {
  uri: `https://${registryHost}/20180419/docker/token`,
  method: "GET",
  headers: new Headers(),
};
await signer.signHttpRequest(request);
const res = await fetch(request.uri, { headers: request.headers });
console.log(JSON.stringify({
  status: res.status,
  body: await res.json(),
  signedWith: request.headers.get("authorization"),
}));
// oci-common keeps timers (circuit breakers) alive; the answer is all this probe owes.
Deno.exit(0);
