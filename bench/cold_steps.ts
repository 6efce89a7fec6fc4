/**
 * Where a cold invocation's time goes: the steps of `obtainDockerToken` (lib/credentials.ts) for
 * an empty cache, called one by one with a timestamp after each. Run as a process by bench.ts
 * with the emulator's environment; prints one JSON line of milliseconds since the parent spawned
 * it (`BENCH_SPAWNED_AT`, epoch ms), so process start-up is counted as kubelet would see it.
 *
 *   deno run -A bench/cold_steps.ts <cache dir> <registry host> [--warm-tls] [--session-key FILE]
 *
 * `--warm-tls` and `--session-key` measure two changes to the cold path without making them:
 * seeding the TLS library's crypto while the session key is generated, and a session key made
 * in advance (read from FILE: `{"pkcs8": base64, "spki": base64}`).
 *
 * @module
 */

const spawnedAt = Number(Deno.env.get("BENCH_SPAWNED_AT"));
const since = () => performance.timeOrigin + performance.now() - spawnedAt;
const marks: [string, number][] = [["runtime up", since()]];
const mark = (name: string) => marks.push([name, since()]);

const [dir, host] = Deno.args;
const warmTls = Deno.args.includes("--warm-tls");
const keyAt = Deno.args.indexOf("--session-key");
const keyFile = keyAt < 0 ? undefined : Deno.args[keyAt + 1];

const {
  lockCache,
  prepareCacheDir,
  readDockerToken,
  readSession,
  refreshTime,
  writeDockerToken,
  writeSession,
} = await import("../lib/cache.ts");
const { federate, federationUrl, generateSessionKey } = await import("../lib/federation.ts");
const { deadline } = await import("../lib/deadline.ts");
const { instanceIdentity } = await import("../lib/identity.ts");
const { fetchInstanceDocuments } = await import("../lib/imds.ts");
const { createLogger } = await import("../lib/log.ts");
const { fetchDockerToken } = await import("../lib/ocir.ts");
await import("../lib/credentials.ts"); // the rest of the cold path's graph, as mod.ts loads it
mark("lib modules loaded");

const log = createLogger("warn");
const d = deadline(45);
await prepareCacheDir(dir);
const lock = await lockCache(dir, d.signal);
if (await readDockerToken(dir, host) || await readSession(dir)) throw new Error("cache not empty");
mark("cache opened, locked, read");

/** A pre-made key pair from `--session-key` (PKCS#8 and SPKI, base64). */
async function premadeKey(): Promise<CryptoKeyPair> {
  const { pkcs8, spki } = JSON.parse(await Deno.readTextFile(keyFile!));
  const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  return {
    privateKey: await crypto.subtle.importKey(
      "pkcs8",
      Uint8Array.fromBase64(pkcs8),
      algorithm,
      true,
      ["sign"],
    ),
    publicKey: await crypto.subtle.importKey(
      "spki",
      Uint8Array.fromBase64(spki),
      algorithm,
      true,
      ["verify"],
    ),
  };
}

const keygenStart = since();
let keygenMs = 0;
const sessionKey = (keyFile ? premadeKey() : generateSessionKey()).then((keys) => {
  keygenMs = since() - keygenStart;
  return keys;
});
// The TLS library (aws-lc) seeds its random generator on first use: ~30 ms of CPU on the main
// thread that the first handshake pays otherwise, after the session key is ready. An HMAC key
// generation does the same seeding now, while the RSA key is generated on a worker thread and
// IMDS answers.
const [docs] = await Promise.all([
  fetchInstanceDocuments({ baseUrl: Deno.env.get("OCI_METADATA_BASE_URL")!, deadline: d, log }),
  warmTls && crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
]);
mark("IMDS answered (4 in parallel)");
const identity = await instanceIdentity(docs);
mark("identity parsed and checked");
const keys = await sessionKey;
mark("waited for the session key");
const st = await federate(identity, keys, {
  url: federationUrl(identity.region),
  deadline: d,
  log,
});
mark("federated");
const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
await writeSession(dir, {
  token: st.token,
  refreshAt: refreshTime(st.issuedAt, st.expiresAt),
  expiresAt: st.expiresAt,
  fingerprint: identity.fingerprint,
  tenancy: identity.tenancy,
  privateKey: pkcs8.toBase64(),
});
mark("session cached (fsync)");
const docker = await fetchDockerToken(host, {
  securityToken: st.token,
  sessionKey: keys.privateKey,
  deadline: d,
  log,
});
mark("docker token received");
await writeDockerToken(dir, {
  host,
  token: docker.token,
  refreshAt: refreshTime(docker.issuedAt, docker.expiresAt),
  expiresAt: docker.expiresAt,
  fingerprint: identity.fingerprint,
  tenancy: identity.tenancy,
});
lock.release();
mark("docker token cached (fsync)");
console.log(JSON.stringify({ marks, keygenMs }));
Deno.exit(0);
