import assert from "node:assert/strict";
import {
  type CachedDockerToken,
  clearTokens,
  dockerTokenPath,
  lockCache,
  prepareCacheDir,
  readDockerToken,
  readSession,
  removeTempFiles,
  writeDockerToken,
  writeSession,
} from "../lib/cache.ts";

const now = Math.floor(Date.now() / 1000);
/** An hour-long token obtained `age` seconds ago. */
const entry = (host: string, age = 60): CachedDockerToken => ({
  host,
  token: `token-for-${host}`,
  obtainedAt: now - age,
  issuedAt: now - age,
  expiresAt: now - age + 3600,
  refreshAt: now - age + 1200,
  fingerprint: "aa:bb",
  tenancy: "ocid1.tenancy.oc1..t",
});
const mode = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

Deno.test("the cache directory is 0700 and its files 0600, even from a loose start", async () => {
  const root = await Deno.makeTempDir();
  const dir = `${root}/a/b`;
  await prepareCacheDir(dir);
  assert.equal(await mode(dir), 0o700);
  await Deno.chmod(dir, 0o755);
  await prepareCacheDir(dir);
  assert.equal(await mode(dir), 0o700);
  await writeDockerToken(dir, entry("iad.ocir.io"));
  assert.equal(await mode(dockerTokenPath(dir, "iad.ocir.io")), 0o600);
  assert.deepEqual(await readDockerToken(dir, "iad.ocir.io"), entry("iad.ocir.io"));
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "docker-iad.ocir.io.json",
  ]);
  await Deno.remove(root, { recursive: true });
});

Deno.test("prepareCacheDir fails on a file, and on a directory it cannot write", async () => {
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(`${root}/file`, "");
  await assert.rejects(prepareCacheDir(`${root}/file`));
  await assert.rejects(prepareCacheDir(`${root}/file/sub`));
  await Deno.remove(root, { recursive: true });
});

Deno.test("unusable, foreign, corrupt or torn entries read as absent; stale ones are kept", async () => {
  const dir = await Deno.makeTempDir();
  const host = "fra.ocir.io";
  assert.equal(await readDockerToken(dir, host), undefined);
  await writeDockerToken(dir, entry(host, 2000));
  assert.deepEqual(await readDockerToken(dir, host), entry(host, 2000), "stale but usable");
  await writeDockerToken(dir, entry(host, 3400));
  assert.equal(await readDockerToken(dir, host), undefined, "within its margin of expiry");
  await writeDockerToken(dir, entry(host, -86400));
  assert.equal(await readDockerToken(dir, host), undefined, "obtained in the future");
  const bad = [
    "",
    "{",
    "null",
    "[]",
    '"x"',
    JSON.stringify({ ...entry(host), host: "iad.ocir.io" }),
    JSON.stringify({ ...entry(host), token: 5 }),
    JSON.stringify({ ...entry(host), refreshAt: "soon" }),
    JSON.stringify({ ...entry(host), obtainedAt: undefined }),
    JSON.stringify({ ...entry(host), denied: "no" }),
    JSON.stringify(entry(host)).slice(0, 40),
  ];
  for (const text of bad) {
    await Deno.writeTextFile(dockerTokenPath(dir, host), text);
    assert.equal(await readDockerToken(dir, host), undefined, text);
  }
  await Deno.writeTextFile(`${dir}/session.json`, "{garbage");
  assert.equal(await readSession(dir), undefined);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sessions round-trip; clearTokens drops tokens, removeTempFiles stray temp files", async () => {
  const dir = await Deno.makeTempDir();
  const session = {
    token: "st",
    obtainedAt: now,
    issuedAt: now,
    refreshAt: now + 1200,
    expiresAt: now + 1200,
    fingerprint: "f",
    tenancy: "t",
    privateKey: "AAAA",
  };
  await writeSession(dir, session);
  assert.deepEqual(await readSession(dir), session);
  await writeDockerToken(dir, entry("iad.ocir.io"));
  await Deno.writeTextFile(`${dir}/docker-x.json.123.abc.tmp`, "{");
  await Deno.writeTextFile(`${dir}/lock`, "");
  const names = () => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  await clearTokens(dir);
  assert.deepEqual(names(), ["docker-x.json.123.abc.tmp", "lock"]);
  await removeTempFiles(dir);
  assert.deepEqual(names(), ["lock"]);
  await Deno.remove(dir, { recursive: true });
});

const holder = (dir: string) => `
  const file = await Deno.open(${
  JSON.stringify(`${dir}/lock`)
}, { read: true, write: true, create: true });
  await file.lock(true);
  console.log("locked");
  setInterval(() => {}, 1000);
`;

Deno.test("lockCache waits for the holder, gives up at the deadline, and survives a SIGKILLed holder", async () => {
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), { args: ["eval", holder(dir)], stdout: "piped" })
    .spawn();
  const reader = child.stdout.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value).trim(), "locked");
  await assert.rejects(lockCache(dir, AbortSignal.timeout(300)), /waiting for the cache lock/);
  const waiting = lockCache(dir, AbortSignal.timeout(20_000));
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const lock = await waiting;
  lock.release();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("concurrent writers never leave a torn file for readers", async () => {
  const dir = await Deno.makeTempDir();
  const host = "iad.ocir.io";
  const writers = Array.from({ length: 8 }, (_, i) =>
    (async () => {
      for (let n = 0; n < 25; n++) {
        await writeDockerToken(dir, { ...entry(host), token: `w${i}-${n}-${"x".repeat(4000)}` });
      }
    })());
  let reads = 0;
  const reader = (async () => {
    // Until at least one read saw a file: under load the writers may not have renamed any yet.
    for (let n = 0; n < 200 || reads === 0; n++) {
      const text = await Deno.readTextFile(dockerTokenPath(dir, host)).catch(() => undefined);
      if (text !== undefined) {
        assert.match(JSON.parse(text).token, /^w\d-\d+-x{4000}$/);
        reads++;
      }
    }
  })();
  await Promise.all([...writers, reader]);
  assert.ok(reads > 0);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [`docker-${host}.json`]);
  await Deno.remove(dir, { recursive: true });
});

// Issue 11: the plugin runs as root; a cache someone else can plant files in is refused.
const NOBODY = 65534;

Deno.test("a cache directory of another user, writable by others, or a symlink is refused", async () => {
  const root = await Deno.makeTempDir();
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    [
      "other owner",
      (d) => Deno.chown(d, NOBODY, null),
      /is owned by uid 65534, not by this process's uid \d+/,
    ],
    ["group-writable", (d) => Deno.chmod(d, 0o770), /is writable by other users \(mode 0770\)/],
    ["world-writable", (d) => Deno.chmod(d, 0o1777), /is writable by other users \(mode 0777\)/],
    ["symlink", async (d) => {
      await Deno.rename(d, `${d}.real`);
      await Deno.symlink(`${d}.real`, d);
    }, /is a symbolic link/],
  ];
  for (const [name, spoil, message] of cases) {
    const dir = `${root}/${name}`;
    await prepareCacheDir(dir);
    await writeDockerToken(dir, entry("iad.ocir.io"));
    await spoil(dir);
    await assert.rejects(prepareCacheDir(dir), message, name);
    assert.equal(await readDockerToken(dir, "iad.ocir.io"), undefined, `${name}: not read`);
  }
  await Deno.remove(root, { recursive: true });
});

Deno.test("symlinks planted at token, session, probe and lock paths are never followed", async () => {
  const dir = await Deno.makeTempDir();
  const outside = await Deno.makeTempDir();
  const target = `${outside}/target`;
  const planted = JSON.stringify(entry("iad.ocir.io"));
  await Deno.writeTextFile(target, planted);
  const link = (name: string) => Deno.symlink(target, `${dir}/${name}`);
  // A token the attacker points at reads as absent, and writing replaces the link, not the target.
  await link("docker-iad.ocir.io.json");
  assert.equal(await readDockerToken(dir, "iad.ocir.io"), undefined);
  await writeDockerToken(dir, entry("iad.ocir.io"));
  assert.ok((await Deno.lstat(dockerTokenPath(dir, "iad.ocir.io"))).isFile);
  await link("session.json");
  assert.equal(await readSession(dir), undefined);
  // The probe of a writable directory once had a predictable name.
  await link(`.probe-${Deno.pid}`);
  await prepareCacheDir(dir);
  // A lock that is a symlink, existing target or dangling, is refused and never created through.
  await link("lock");
  await assert.rejects(lockCache(dir, AbortSignal.timeout(1000)), /lock is a symbolic link/);
  await Deno.remove(`${dir}/lock`);
  await Deno.symlink(`${outside}/created`, `${dir}/lock`);
  await assert.rejects(lockCache(dir, AbortSignal.timeout(1000)), /lock is a symbolic link/);
  assert.equal(await Deno.readTextFile(target), planted, "the target is untouched");
  assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["target"]);
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(outside, { recursive: true });
});

Deno.test("token files of another user are ignored; a lock path that is a directory is refused", async () => {
  const dir = await Deno.makeTempDir();
  await writeDockerToken(dir, entry("iad.ocir.io"));
  await Deno.chown(dockerTokenPath(dir, "iad.ocir.io"), NOBODY, null);
  assert.equal(await readDockerToken(dir, "iad.ocir.io"), undefined);
  await Deno.mkdir(`${dir}/lock`);
  await assert.rejects(lockCache(dir, AbortSignal.timeout(1000)), /lock is not a regular file/);
  await Deno.remove(dir, { recursive: true });
});
