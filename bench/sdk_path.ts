/**
 * The job of one cold plugin invocation done with the official OCI TypeScript SDK, written the
 * way a user would write it: the instance-principals provider, `DefaultRequestSigner`, and a
 * signed GET of the registry's docker token. It prints the token JSON. The benchmark runs it as a
 * process next to the plugin (same emulator environment), so both pay for their own start-up,
 * module graph, key generation, federation and token request.
 *
 *   deno run -A bench/sdk_path.ts <federation endpoint> <registry host>
 *
 * The IMDS base comes from `OCI_METADATA_BASE_URL`; the federation endpoint is given because
 * oci-common derives it from the region only for regions its own table knows.
 *
 * @module
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
const response = await fetch(request.uri, { headers: request.headers });
if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
console.log(JSON.stringify(await response.json()));
// oci-common leaves timers (circuit breakers) running that would keep the process alive; a user
// script has its answer and exits.
Deno.exit(0);
