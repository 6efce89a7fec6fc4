/**
 * A real CNCF Distribution registry (Debian's `docker-registry`) on loopback, with filesystem
 * storage in a temporary directory and token authentication, for end-to-end tests.
 */
import http from "node:http";

/** Token authentication settings (Distribution's `auth.token`). */
export interface TokenAuth {
  /** The Bearer realm the registry's challenges name, e.g. `https://iad.ocir.io/20180419/docker/token`. */
  realm: string;
  /** `service` of the challenge, and the `aud` tokens must carry, e.g. `iad.ocir.io`. */
  service: string;
  /** The `iss` tokens must carry. */
  issuer: string;
  /** PEM of the certificates whose keys may sign tokens. */
  rootCertBundle: string;
}

/** A running registry. */
export interface Distribution {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** What the registry has logged so far (for failure messages). */
  logs(): string;
  /** Stops the registry and removes its storage and configuration. */
  stop(): Promise<void>;
}

/** The status of a GET; node:http because it never goes through a proxy from the environment. */
function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}

/** Waits at most this long for the registry to say where it listens (a safety net, not a check). */
const START_LIMIT_MS = 20_000;
/** Waits at most this long for it to exit after SIGTERM before killing it. */
const STOP_LIMIT_MS = 10_000;

/**
 * Starts `docker-registry serve` on 127.0.0.1 with a port the kernel picks (`:0`; the registry
 * logs the port it got, so there is no race for a "free" port), and waits until `/v2/` answers the
 * token challenge.
 */
export async function startDistribution(auth: TokenAuth): Promise<Distribution> {
  const dir = await Deno.makeTempDir({ prefix: "okecp-registry-" });
  await Deno.writeTextFile(`${dir}/token-ca.pem`, auth.rootCertBundle);
  // JSON is YAML, so the configuration needs no YAML writer and no quoting rules.
  const config = {
    version: 0.1,
    log: { level: "info", formatter: "text" },
    storage: { filesystem: { rootdirectory: `${dir}/data` }, delete: { enabled: true } },
    http: {
      addr: "127.0.0.1:0",
      // One instance only; a fixed secret just silences the "generated random secret" warning.
      secret: crypto.randomUUID(),
      // Upload `Location`s as paths: behind the emulator's TLS front an absolute one would be
      // http://<registry host>/…, which a client follows without the proxy (REGISTRY.md §7).
      relativeurls: true,
    },
    auth: {
      token: {
        realm: auth.realm,
        service: auth.service,
        issuer: auth.issuer,
        rootcertbundle: `${dir}/token-ca.pem`,
      },
    },
  };
  await Deno.writeTextFile(`${dir}/config.yml`, JSON.stringify(config, null, 2));
  const child = new Deno.Command("docker-registry", {
    args: ["serve", `${dir}/config.yml`],
    // REGISTRY_* variables override the file, so none may leak in from the caller.
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  let stopped = false;
  const listening = Promise.withResolvers<string>();
  // Both pipes are read to the end, or a chatty registry would block on a full pipe.
  const drain = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(chunk) {
          log += chunk;
          const m = /msg="listening on (127\.0\.0\.1:\d+)"/.exec(log);
          if (m) listening.resolve(m[1]);
        },
      }),
    );
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const exited = child.status.then((status) => {
    if (!stopped) listening.reject(new Error(`docker-registry exited (${status.code}):\n${log}`));
    return status;
  });
  const stop = async () => {
    if (!stopped) {
      stopped = true;
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
    }
    // Distribution drains and exits on SIGTERM; SIGKILL only if it ever hangs there.
    const kill = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
    }, STOP_LIMIT_MS);
    await exited;
    clearTimeout(kill);
    await drained;
    await Deno.remove(dir, { recursive: true });
  };
  const limit = setTimeout(
    () => listening.reject(new Error(`docker-registry did not start:\n${log}`)),
    START_LIMIT_MS,
  );
  try {
    const address = await listening.promise;
    const url = `http://${address}`;
    const status = await statusOf(`${url}/v2/`);
    if (status !== 401) throw new Error(`GET /v2/ answered ${status}, not 401:\n${log}`);
    return { url, logs: () => log, stop };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    clearTimeout(limit);
  }
}
