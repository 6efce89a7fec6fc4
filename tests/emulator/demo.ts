/**
 * `deno task demo`: the plugin doing its whole job on one machine. Starts the OCI emulator,
 * runs the real plugin (`mod.ts`, with the release binary's permissions) twice as kubelet would (cold, then warm from its cache), and
 * shows each answer with the password redacted, what crossed the wire, and how long it took.
 */
import { fileURLToPath } from "node:url";
import { permissionFlags } from "../../scripts/build.ts";
import { emulatorClient } from "./client.ts";
import { type RequestLogEntry, startEmulator } from "./mod.ts";

const PLUGIN = fileURLToPath(new URL("../../mod.ts", import.meta.url));

/** Shows a secret's first characters and its length only. */
function redact(secret: string): string {
  return `${secret.slice(0, 6)}…(${secret.length} chars)`;
}

/** The response with every password redacted; unparsable output is shown as it came. */
function redacted(stdout: string): string {
  try {
    const response = JSON.parse(stdout);
    for (const entry of Object.values(response.auth ?? {}) as { password?: string }[]) {
      if (typeof entry.password === "string") entry.password = redact(entry.password);
    }
    return JSON.stringify(response, null, 2);
  } catch {
    return stdout;
  }
}

function wireLine(e: RequestLogEntry, start: number): string {
  const offset = `+${String(e.at - start).padStart(4)} ms`;
  const what = e.service === "proxy" ? `CONNECT ${e.host}` : `${e.method} ${e.host}${e.path}`;
  const reason = e.reason ? `  (${e.reason})` : "";
  return `  ${offset}  ${e.service.padEnd(5)} ${what} -> ${e.status || "---"}${reason}`;
}

const emu = await startEmulator();
const cacheDir = await Deno.makeTempDir({ prefix: "oke-credential-provider-demo-" });
const image = `${emu.registryHost}/${emu.namespace}/app:1.0`;
const request = JSON.stringify({
  apiVersion: "credentialprovider.kubelet.k8s.io/v1",
  kind: "CredentialProviderRequest",
  image,
});
let failed = false;
let password: string | undefined;

/** Uses the password as a docker client would: basic credentials at the registry's realm. */
async function asDockerClient(secret: string): Promise<string> {
  const client = await emulatorClient(emu.env);
  try {
    const scope = `repository:${emu.namespace}/app:pull`;
    const res = await fetch(
      `https://${emu.registryHost}/20180419/docker/token?service=${emu.registryHost}&scope=${scope}`,
      { client, headers: { authorization: `Basic ${btoa(`BEARER_TOKEN:${secret}`)}` } },
    );
    const body = await res.json();
    if (res.status !== 200) return `a docker client using it is refused: ${JSON.stringify(body)}`;
    const claims = JSON.parse(
      new TextDecoder().decode(
        Uint8Array.fromBase64(body.token.split(".")[1], { alphabet: "base64url" }),
      ),
    );
    return `a docker client using it at the registry's token realm is granted: ${
      JSON.stringify(claims.access)
    }`;
  } finally {
    client.close();
  }
}
try {
  console.log(`OCI emulator up: region ${emu.region.regionId}, tenancy ${emu.instance.tenancy}`);
  console.log(`kubelet asks for: ${image}`);
  for (const run of ["cold (empty cache)", "warm (from cache)"]) {
    const seen = emu.requests.length;
    const start = Date.now();
    const child = new Deno.Command(Deno.execPath(), {
      // The release binary's permissions, its cache path being this demo's temp directory.
      args: ["run", ...permissionFlags([cacheDir]), PLUGIN, "--cache-dir", cacheDir],
      // Deno's update check would otherwise show up on the wire as a refused CONNECT.
      env: { ...emu.env, DENO_NO_UPDATE_CHECK: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(request));
    await writer.close();
    const out = await child.output();
    const ms = Date.now() - start;
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    console.log(`\n== run ${run}: exit ${out.code}, ${ms} ms`);
    console.log(redacted(stdout));
    if (stderr) console.log(`stderr:\n${stderr}`);
    const wire = emu.requests.slice(seen);
    console.log(wire.length ? `on the wire (${wire.length} requests):` : "on the wire: nothing");
    for (const e of wire) console.log(wireLine(e, start));
    if (out.code !== 0) failed = true;
    else password = JSON.parse(stdout).auth?.[emu.registryHost]?.password;
  }
  if (password) console.log(`\n${await asDockerClient(password)}`);
  console.log(`\ncounters: ${JSON.stringify(emu.counters)}`);
} finally {
  await emu.close();
  await Deno.remove(cacheDir, { recursive: true });
}
Deno.exit(failed ? 1 : 0);
