import assert from "node:assert/strict";
import { DEFAULT_CLUSTER_CA, DEFAULT_IMDS_BASES, parseOptions } from "../lib/options.ts";
import { DEFAULT_CACHE_DIR } from "../lib/cache.ts";

const noEnv = () => undefined;

Deno.test("parseOptions defaults, then environment, then flags", async () => {
  assert.deepEqual(await parseOptions([], noEnv), {
    command: "provide",
    cacheDir: DEFAULT_CACHE_DIR,
    timeoutSeconds: 45,
    logLevel: "warn",
    imdsBaseUrls: ["http://169.254.169.254/opc/v2", "http://[fd00:c1::a9fe:a9fe]/opc/v2"],
    federationEndpoint: undefined,
    checkPull: false,
    registries: [],
    record: true,
    nodeIdentity: "allow",
    clusterCa: DEFAULT_CLUSTER_CA,
    federationTokenType: "upst",
  });
  const env = (name: string) =>
    ({
      OKE_CREDENTIAL_PROVIDER_CACHE_DIR: "/env/cache",
      OCI_METADATA_BASE_URL: "http://127.0.0.1:1/opc/v2",
      OCI_SDK_AUTH_CLIENT_REGION_URL: "https://auth.example",
    })[name];
  const fromEnv = await parseOptions([], env);
  assert.equal(fromEnv.cacheDir, "/env/cache");
  assert.deepEqual(fromEnv.imdsBaseUrls, ["http://127.0.0.1:1/opc/v2"], "it replaces both");
  assert.equal((await parseOptions([], noEnv)).imdsBaseUrls, DEFAULT_IMDS_BASES);
  assert.equal(fromEnv.federationEndpoint, "https://auth.example");
  const flags = await parseOptions([
    "--cache-dir",
    "/flag",
    "--timeout=2.5",
    "--log-level",
    "debug",
  ], env);
  assert.equal(flags.cacheDir, "/flag");
  assert.equal(flags.timeoutSeconds, 2.5);
  assert.equal(flags.logLevel, "debug");
  assert.equal(flags.checkPull, false);
  assert.equal((await parseOptions(["--check-pull"], env)).checkPull, true);
});

Deno.test("parseOptions takes the log level and --check-pull from kubelet's `env` too", async () => {
  const env = (values: Record<string, string>) => (name: string) => values[name];
  const fromEnv = await parseOptions(
    [],
    env({
      OKE_CREDENTIAL_PROVIDER_LOG_LEVEL: "debug",
      OKE_CREDENTIAL_PROVIDER_CHECK_PULL: "true",
    }),
  );
  assert.equal(fromEnv.logLevel, "debug");
  assert.equal(fromEnv.checkPull, true);
  assert.equal(
    (await parseOptions([], env({ OKE_CREDENTIAL_PROVIDER_CHECK_PULL: "1" }))).checkPull,
    false,
  );
  const flagWins = await parseOptions(
    ["--log-level", "error"],
    env({ OKE_CREDENTIAL_PROVIDER_LOG_LEVEL: "debug" }),
  );
  assert.equal(flagWins.logLevel, "error");
  await assert.rejects(
    parseOptions([], env({ OKE_CREDENTIAL_PROVIDER_LOG_LEVEL: "loud" })),
    /arguments: OKE_CREDENTIAL_PROVIDER_LOG_LEVEL "loud" is not one of error, warn, info, debug/,
  );
});

Deno.test("parseOptions knows the commands", async () => {
  assert.equal((await parseOptions(["--help"], noEnv)).command, "help");
  assert.equal((await parseOptions(["--version"], noEnv)).command, "version");
  const doctor = await parseOptions(["doctor", "--image", "iad.ocir.io/ns/a:1"], noEnv);
  assert.equal(doctor.command, "doctor");
  assert.equal(doctor.image, "iad.ocir.io/ns/a:1");
  const warm = await parseOptions("warm --registry iad.ocir.io --registry fra.ocir.io".split(" "));
  assert.equal(warm.command, "warm");
  assert.deepEqual(warm.registries, ["iad.ocir.io", "fra.ocir.io"]);
  assert.deepEqual((await parseOptions(["warm"], noEnv)).registries, []);
  const refresh = await parseOptions(["refresh", "--registry", "iad.ocir.io"], noEnv);
  assert.equal(refresh.command, "refresh");
  assert.deepEqual(refresh.registries, ["iad.ocir.io"]);
  const status = await parseOptions(["status", "--json", "--prometheus", "/x/oke.prom"], noEnv);
  assert.deepEqual([status.command, status.json, status.prometheus], [
    "status",
    true,
    "/x/oke.prom",
  ]);
});

Deno.test("parseOptions: recording for status is on unless OKE_CREDENTIAL_PROVIDER_RECORD=false", async () => {
  const record = async (value?: string) =>
    (await parseOptions([], (n) => n === "OKE_CREDENTIAL_PROVIDER_RECORD" ? value : undefined))
      .record;
  assert.deepEqual(
    [await record(), await record("true"), await record("false")],
    [true, true, false],
  );
});

Deno.test("parseOptions rejects bad flags with an arguments-step error", async () => {
  const table: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'/],
    [["--timeout", "0"], /--timeout "0" is not a number/],
    [["--timeout", "abc"], /--timeout "abc"/],
    [["--timeout", "601"], /--timeout "601"/],
    [["--log-level", "trace"], /--log-level "trace" is not one of error, warn, info, debug/],
    [["--cache-dir", ""], /--cache-dir is empty/],
    [["--cache-dir"], /argument missing/],
    [["provide"], /unexpected argument "provide"/],
    [["doctor", "x"], /unexpected argument "x"/],
    [["--image", "x"], /--image is a flag of doctor/],
    [["--registry", "iad.ocir.io"], /--registry is a flag of warm/],
    [["doctor", "--registry", "iad.ocir.io"], /--registry is a flag of warm/],
    [["refresh", "--registry", "a.ocir.io", "--registry", "b.ocir.io"], /at most one --registry/],
    [["--json"], /--json is a flag of status/],
    [["doctor", "--prometheus", "f"], /--prometheus is a flag of status/],
    [["status", "--prometheus", ""], /--prometheus is empty/],
    [["status", "doctor"], /unexpected argument "doctor"/],
  ];
  for (const [args, pattern] of table) {
    await assert.rejects(
      parseOptions(args, noEnv),
      (e: Error) => e.message.startsWith("arguments: ") && pattern.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("parseOptions: per-workload identity from environment, flags winning", async () => {
  const env = (name: string) =>
    ({
      OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY: "oke",
      OKE_CREDENTIAL_PROVIDER_NODE_IDENTITY: "deny",
      OKE_CREDENTIAL_PROVIDER_PROXYMUX_URL: "https://10.0.0.2:12250/resourcePrincipalSessionTokens",
      OKE_CREDENTIAL_PROVIDER_CLUSTER_CA: "/etc/ca.pem",
      OKE_CREDENTIAL_PROVIDER_IDENTITY_DOMAIN_URL: "https://idcs-1.identity.oraclecloud.com",
      OKE_CREDENTIAL_PROVIDER_FEDERATION_TOKEN_TYPE: "rpst",
    })[name];
  const fromEnv = await parseOptions([], env);
  assert.equal(fromEnv.workloadIdentity, "oke");
  assert.equal(fromEnv.nodeIdentity, "deny");
  assert.equal(fromEnv.proxymuxUrl, "https://10.0.0.2:12250/resourcePrincipalSessionTokens");
  assert.equal(fromEnv.clusterCa, "/etc/ca.pem");
  assert.equal(fromEnv.identityDomainUrl, "https://idcs-1.identity.oraclecloud.com/");
  assert.equal(fromEnv.federationTokenType, "rpst");
  const flags = await parseOptions([
    "--workload-identity=federation",
    "--node-identity=allow",
    "--cluster-ca=/x.pem",
    "--federation-token-type=upst",
    "--proxymux-url=https://127.0.0.1:1/p",
    "--identity-domain-url=https://idcs-2.identity.oraclecloud.com",
  ], env);
  assert.equal(flags.workloadIdentity, "federation");
  assert.equal(flags.nodeIdentity, "allow");
  assert.equal(flags.clusterCa, "/x.pem");
  assert.equal(flags.federationTokenType, "upst");
  assert.equal(flags.proxymuxUrl, "https://127.0.0.1:1/p");
  assert.equal(flags.identityDomainUrl, "https://idcs-2.identity.oraclecloud.com/");
  const doctor = await parseOptions(["doctor", "--service-account-token", "/t"], noEnv);
  assert.equal(doctor.serviceAccountTokenFile, "/t");
});

Deno.test("parseOptions refuses bad per-workload settings with one line naming them", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--workload-identity", "gcp"], {}, /--workload-identity "gcp" is not one of oke, federation/],
    [["--node-identity", "yes"], {}, /--node-identity "yes" is not one of allow, deny/],
    [["--proxymux-url", "http://10.0.0.2:12250/x"], {}, /--proxymux-url .* is not https/],
    [["--identity-domain-url", "nope"], {}, /--identity-domain-url "nope" is not a URL/],
    [["--federation-token-type", "jwt"], {}, /is not one of upst, rpst/],
    [["--service-account-token", "/t"], {}, /--service-account-token is a flag of doctor/],
    [["--cluster-ca="], {}, /--cluster-ca is empty/],
    [
      [],
      { OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY: "x" },
      /OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY "x"/,
    ],
    [[], { OKE_CREDENTIAL_PROVIDER_NODE_IDENTITY: "no" }, /NODE_IDENTITY "no"/],
  ];
  for (const [args, vars, message] of cases) {
    await assert.rejects(parseOptions(args, (name) => vars[name]), message, args.join(" "));
  }
});
