/**
 * Runs Debian's `skopeo` as a container client on a node would: through an HTTPS proxy, trusting
 * a CA file, in a clean environment with its own HOME (so no auth file, registries.conf or
 * certs.d of the developer's account takes part), and TLS verification always on.
 */

/** Where skopeo reaches the registry, and its scratch space. */
export interface SkopeoEnv {
  /** `http://127.0.0.1:<port>` of the CONNECT proxy. */
  httpsProxy: string;
  /** PEM file of the CA that signed the registry's TLS certificate. */
  caFile: string;
  /** A private directory: HOME, TMPDIR and the signature policy file go here. */
  workDir: string;
}

/** What one skopeo run did. */
export interface SkopeoRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Kills skopeo after this long: a safety net against a hung test, not a timing check. */
const KILL_AFTER_MS = 60_000;

/** Runs `skopeo <args>`; global options (policy, tmpdir) come first. */
export async function skopeo(args: string[], env: SkopeoEnv): Promise<SkopeoRun> {
  // `copy` checks a signature policy; an explicit accept-anything file keeps the result
  // independent of /etc/containers/policy.json (signatures are not what these tests are about).
  const policy = `${env.workDir}/policy.json`;
  await Deno.writeTextFile(
    policy,
    JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }),
  );
  const child = new Deno.Command("skopeo", {
    args: ["--policy", policy, "--tmpdir", env.workDir, ...args],
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: env.workDir,
      TMPDIR: env.workDir,
      HTTPS_PROXY: env.httpsProxy,
      SSL_CERT_FILE: env.caFile,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
  const out = await child.output();
  clearTimeout(timer);
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
