/**
 * The kubelet config as kubelet reads it: strict decoding, kubelet's validation rules and its
 * `matchImages` glob matching (PROTOCOL.md §1), checked against every region we know.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { REGIONS } from "../lib/regions.ts";
import {
  GoError,
  imageMatches,
  parseSchemelessURL,
  pathMatch,
  splitHostPort,
} from "./support/kubelet_glob.ts";

const CONFIG_PATH = new URL("../config/credential-provider-config.yaml", import.meta.url);
const PROVIDER_NAME = "oke-credential-provider";

const WORKLOAD_CONFIG_PATH = new URL(
  "../config/credential-provider-config-workload.yaml",
  import.meta.url,
);

function loadConfig(path: URL = CONFIG_PATH): Record<string, unknown> {
  // YAML 1.1 because kubelet's YAML reader (go-yaml v2) is 1.1: `on`/`yes` would be booleans.
  return parse(Deno.readTextFileSync(path), { version: "1.1", uniqueKeys: true });
}

// A Kubernetes qualified name (an annotation key): optional DNS-1123 subdomain prefix + "/" +
// name of up to 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
const QUALIFIED_NAME =
  /^(([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** Kubelet's rules for `tokenAttributes` (KEP-4412; WORKLOAD-IDENTITY.md §1). */
function validateTokenAttributes(p: Record<string, unknown>, at: string): string[] {
  const errors: string[] = [];
  const t = p.tokenAttributes as Record<string, unknown>;
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    return [`${at}.tokenAttributes: must be an object`];
  }
  for (const key of Object.keys(t)) {
    if (
      ![
        "serviceAccountTokenAudience",
        "cacheType",
        "requireServiceAccount",
        "requiredServiceAccountAnnotationKeys",
        "optionalServiceAccountAnnotationKeys",
      ].includes(key)
    ) errors.push(`${at}.tokenAttributes: unknown field "${key}"`);
  }
  if (p.apiVersion !== "credentialprovider.kubelet.k8s.io/v1") {
    errors.push(`${at}.tokenAttributes: only supported for credentialprovider.kubelet.k8s.io/v1`);
  }
  if (typeof t.serviceAccountTokenAudience !== "string" || t.serviceAccountTokenAudience === "") {
    errors.push(`${at}.tokenAttributes.serviceAccountTokenAudience: required`);
  }
  if (t.cacheType !== "Token" && t.cacheType !== "ServiceAccount") {
    errors.push(`${at}.tokenAttributes.cacheType: must be Token or ServiceAccount`);
  }
  if (typeof t.requireServiceAccount !== "boolean") {
    errors.push(`${at}.tokenAttributes.requireServiceAccount: required (true or false)`);
  }
  const keys = (name: string) => {
    const list = t[name];
    if (list === undefined) return [];
    if (!Array.isArray(list) || !list.every((k) => typeof k === "string")) {
      errors.push(`${at}.tokenAttributes.${name}: must be a list of strings`);
      return [];
    }
    const seen = new Set<string>();
    for (const k of list) {
      if (!QUALIFIED_NAME.test(k)) errors.push(`${at}.tokenAttributes.${name}: "${k}" invalid`);
      if (seen.has(k)) errors.push(`${at}.tokenAttributes.${name}: duplicate "${k}"`);
      seen.add(k);
    }
    return list as string[];
  };
  const required = keys("requiredServiceAccountAnnotationKeys");
  const optional = keys("optionalServiceAccountAnnotationKeys");
  if (required.length > 0 && t.requireServiceAccount !== true) {
    errors.push(
      `${at}.tokenAttributes.requiredServiceAccountAnnotationKeys: only with requireServiceAccount: true`,
    );
  }
  for (const k of required) {
    if (optional.includes(k)) {
      errors.push(`${at}.tokenAttributes: "${k}" both required and optional`);
    }
  }
  return errors;
}

/** Go's `time.ParseDuration`, in nanoseconds; throws where Go returns an error. */
export function parseGoDuration(s: string): number {
  const units: Record<string, number> = {
    ns: 1,
    us: 1e3,
    "µs": 1e3,
    "μs": 1e3,
    ms: 1e6,
    s: 1e9,
    m: 60e9,
    h: 3600e9,
  };
  let rest = s;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") throw new Error(`invalid duration "${s}"`);
  let total = 0;
  while (rest !== "") {
    const m = /^(\d*)(?:\.(\d*))?([a-zµμ]*)/.exec(rest)!;
    const [whole, int, frac = "", unit] = m;
    if (int === "" && frac === "") throw new Error(`invalid duration "${s}"`);
    if (unit === "") throw new Error(`missing unit in duration "${s}"`);
    if (!(unit in units)) throw new Error(`unknown unit "${unit}" in duration "${s}"`);
    total += Number(`${int || "0"}.${frac || "0"}`) * units[unit];
    rest = rest.slice(whole.length);
  }
  return sign * total;
}

/** Kubelet's decoding (strict: unknown fields are errors) and validation of the config file. */
export function validateConfig(doc: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const unknown = (obj: Record<string, unknown>, allowed: string[], where: string) => {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) errors.push(`${where}: unknown field "${key}"`);
    }
  };
  unknown(doc, ["apiVersion", "kind", "providers"], "config");
  const fileVersions = ["v1", "v1beta1", "v1alpha1"].map((v) => `kubelet.config.k8s.io/${v}`);
  if (!fileVersions.includes(doc.apiVersion as string)) errors.push("config: bad apiVersion");
  if (doc.kind !== "CredentialProviderConfig") {
    errors.push("config: kind must be CredentialProviderConfig");
  }
  const providers = doc.providers;
  if (!Array.isArray(providers) || providers.length === 0) {
    return [...errors, "providers: at least 1 item in plugins is required"];
  }
  const names = new Set<string>();
  providers.forEach((p: Record<string, unknown>, i) => {
    const at = `providers[${i}]`;
    unknown(
      p,
      [
        "name",
        "matchImages",
        "defaultCacheDuration",
        "apiVersion",
        "args",
        "env",
        "tokenAttributes",
      ],
      at,
    );
    const name = p.name;
    if (typeof name !== "string" || name === "") errors.push(`${at}.name: required`);
    else {
      if (name.includes("/")) errors.push(`${at}.name: must not contain '/'`);
      if (name.includes(" ")) errors.push(`${at}.name: must not contain spaces`);
      if (name === "." || name === "..") errors.push(`${at}.name: must not be '.' or '..'`);
      if (names.has(name)) errors.push(`${at}.name: duplicate provider name`);
      names.add(name);
    }
    const matchImages = p.matchImages;
    if (!Array.isArray(matchImages) || matchImages.length === 0) {
      errors.push(`${at}.matchImages: at least 1 item is required`);
    } else {
      for (const pattern of matchImages) {
        if (typeof pattern !== "string") errors.push(`${at}.matchImages: not a string: ${pattern}`);
        else {
          try {
            parseSchemelessURL(pattern);
          } catch (e) {
            errors.push(`${at}.matchImages: "${pattern}": ${(e as Error).message}`);
          }
        }
      }
    }
    if (p.defaultCacheDuration === undefined) errors.push(`${at}.defaultCacheDuration: required`);
    else {
      try {
        if (parseGoDuration(String(p.defaultCacheDuration)) < 0) {
          errors.push(`${at}.defaultCacheDuration: must be greater than or equal to 0`);
        }
      } catch (e) {
        errors.push(`${at}.defaultCacheDuration: ${(e as Error).message}`);
      }
    }
    const pluginVersions = ["v1", "v1beta1", "v1alpha1"].map((v) =>
      `credentialprovider.kubelet.k8s.io/${v}`
    );
    if (!pluginVersions.includes(p.apiVersion as string)) {
      errors.push(`${at}.apiVersion: must be one of ${pluginVersions.join(", ")}`);
    }
    if (
      p.args !== undefined && !(Array.isArray(p.args) && p.args.every((a) => typeof a === "string"))
    ) {
      errors.push(`${at}.args: must be a list of strings`);
    }
    if (p.tokenAttributes !== undefined) errors.push(...validateTokenAttributes(p, at));
    if (p.env !== undefined) {
      const ok = Array.isArray(p.env) &&
        p.env.every((e) =>
          typeof e?.name === "string" && typeof e?.value === "string" && Object.keys(e).length === 2
        );
      if (!ok) errors.push(`${at}.env: must be a list of {name, value}`);
    }
  });
  return errors;
}

function ourProvider(): { matchImages: string[]; [k: string]: unknown } {
  const providers = loadConfig().providers as { name: string; matchImages: string[] }[];
  return providers.find((p) => p.name === PROVIDER_NAME)!;
}

const realmDomains = [...new Set(REGIONS.map((r) => r.realmDomain))];

Deno.test("config: kubelet decodes and validates it without error", () => {
  assert.deepEqual(validateConfig(loadConfig()), []);
});

Deno.test("config: one provider, named like the installed binary, speaking v1", () => {
  const doc = loadConfig();
  assert.equal(doc.apiVersion, "kubelet.config.k8s.io/v1");
  const providers = doc.providers as Record<string, unknown>[];
  assert.equal(providers.length, 1);
  assert.equal(providers[0].name, PROVIDER_NAME);
  assert.equal(providers[0].apiVersion, "credentialprovider.kubelet.k8s.io/v1");
  assert.equal(parseGoDuration(String(providers[0].defaultCacheDuration)), 55 * 60e9);
  // Policy-aware caching is off by default: no args.
  assert.equal(providers[0].args, undefined);
});

Deno.test("config: matchImages are *.ocir.io plus one pattern per known realm domain, nothing else", () => {
  const expected = ["*.ocir.io", ...realmDomains.map((d) => `ocir.*.oci.${d}`)].sort();
  assert.deepEqual([...ourProvider().matchImages].sort(), expected);
});

Deno.test("config: every OCIR host form of every region matches", () => {
  const { matchImages } = ourProvider();
  const digest = "@sha256:" + "a".repeat(64);
  let checked = 0;
  for (const r of REGIONS) {
    const hosts = [`ocir.${r.regionId}.oci.${r.realmDomain}`];
    // The ocir.io forms exist in the commercial realm only (PROTOCOL.md §5).
    if (r.realmKey === "oc1") hosts.push(`${r.regionKey}.ocir.io`, `${r.regionId}.ocir.io`);
    for (const host of hosts) {
      for (const image of [`${host}/ns/app:1`, `${host}/ns/team/app${digest}`, `${host}/ns/app`]) {
        assert.ok(imageMatches(matchImages, image), `${image} must match`);
        checked++;
      }
    }
  }
  assert.ok(checked > 3 * REGIONS.length, "the region table was read");
});

Deno.test("config: other registries and look-alike hosts do not match", () => {
  const { matchImages } = ourProvider();
  for (
    const image of [
      "docker.io/library/nginx",
      "docker.io/library/nginx:1.27",
      "ghcr.io/x/y",
      "registry.k8s.io/pause:3.10",
      "ocir.io/x",
      "ocir.io.evil.com/x",
      "iad.ocir.io.evil.com/x",
      "evil.com/iad.ocir.io/x",
      "iad.ocir.io:5000/x",
      "iad.ocir.io:443/x", // Go keeps ":443", so the ports differ
      "a.iad.ocir.io/x",
      "ocir.us-ashburn-1.oci.oraclecloud.com.evil.com/x",
      "ocir.us-ashburn-1.oci.evil.com/x",
      "ocir.us-ashburn-1.oci.oraclecloud.com:8443/x",
      "x.ocir.us-ashburn-1.oci.oraclecloud.com/x",
      "ocir.us-ashburn-1.oraclecloud.com/x",
      "localhost:5000/ns/app",
    ]
  ) {
    assert.ok(!imageMatches(matchImages, image), `${image} must not match`);
  }
});

Deno.test("config: a dedicated realm needs the one line the YAML comment describes", () => {
  const { matchImages } = ourProvider();
  const image = "ocir.us-dedicated-1.oci.example-realm.com/ns/app:1";
  assert.ok(!imageMatches(matchImages, image));
  assert.ok(imageMatches([...matchImages, "ocir.*.oci.example-realm.com"], image));
  assert.match(Deno.readTextFileSync(CONFIG_PATH), /"ocir\.\*\.oci\.example-realm\.com"/);
});

/** A minimal config kubelet accepts, with `extra` fields on its one provider. */
const goodConfig = <T extends Record<string, unknown>>(extra: T = {} as T) => ({
  apiVersion: "kubelet.config.k8s.io/v1",
  kind: "CredentialProviderConfig",
  providers: [{
    name: "p",
    apiVersion: "credentialprovider.kubelet.k8s.io/v1",
    matchImages: ["*.ocir.io"],
    defaultCacheDuration: "1m",
    ...extra,
  }],
});

Deno.test("validation: kubelet's rules reject what kubelet rejects", () => {
  const good = () => goodConfig();
  assert.deepEqual(validateConfig(good()), []);
  const broken: [string, (c: ReturnType<typeof good>) => void][] = [
    ["no providers", (c) => c.providers = []],
    ["slash in name", (c) => c.providers[0].name = "a/b"],
    ["space in name", (c) => c.providers[0].name = "a b"],
    ["dot name", (c) => c.providers[0].name = ".."],
    ["duplicate name", (c) => c.providers.push({ ...c.providers[0] })],
    ["empty matchImages", (c) => c.providers[0].matchImages = []],
    ["bad port", (c) => c.providers[0].matchImages = ["iad.ocir.io:abc"]],
    ["no duration", (c) => delete (c.providers[0] as Record<string, unknown>).defaultCacheDuration],
    ["negative duration", (c) => c.providers[0].defaultCacheDuration = "-1m"],
    ["duration without unit", (c) => c.providers[0].defaultCacheDuration = "55"],
    ["bad plugin apiVersion", (c) => c.providers[0].apiVersion = "v1"],
    ["unknown field", (c) => Object.assign(c.providers[0], { cacheKeyType: "Registry" })],
    ["wrong kind", (c) => c.kind = "KubeletConfiguration"],
  ];
  for (const [what, breakIt] of broken) {
    const c = good();
    breakIt(c);
    assert.notDeepEqual(validateConfig(c), [], what);
  }
});

Deno.test("glob: Go path.Match per label, equal label counts, ports and path prefixes", () => {
  assert.ok(pathMatch("*", "us-ashburn-1"));
  assert.ok(pathMatch("i?d", "iad"));
  assert.ok(pathMatch("[a-z]*", "iad"));
  assert.ok(!pathMatch("[^a-z]*", "iad"));
  assert.ok(pathMatch("\\*", "*"));
  assert.ok(!pathMatch("\\*", "a"));
  assert.ok(!pathMatch("*", "a/b"));
  assert.throws(() => pathMatch("[", "a"), GoError);
  assert.throws(() => pathMatch("[]", "a"), GoError);
  assert.throws(() => pathMatch("[z-a]", "a"), GoError);
  assert.throws(() => pathMatch("a\\", "a"), GoError);
  assert.deepEqual(splitHostPort("iad.ocir.io"), ["iad.ocir.io", ""]);
  assert.deepEqual(splitHostPort("iad.ocir.io:5000"), ["iad.ocir.io", "5000"]);
  assert.deepEqual(splitHostPort("[::1]:5000"), ["::1", "5000"]);
  assert.deepEqual(parseSchemelessURL("iad.ocir.io:443/ns/app"), {
    host: "iad.ocir.io:443",
    path: "/ns/app",
  });
  assert.throws(() => parseSchemelessURL("iad.ocir.io:x/ns"), GoError);
  assert.ok(imageMatches(["*.ocir.io"], "iad.ocir.io/ns/app"));
  assert.ok(!imageMatches(["*.io"], "a.k8s.io/x"));
  assert.ok(imageMatches(["*.ocir.io/ns"], "iad.ocir.io/ns/app"));
  assert.ok(!imageMatches(["*.ocir.io/ns"], "iad.ocir.io/other/app"));
  assert.ok(!imageMatches(["[.ocir.io"], "iad.ocir.io/x"), "a bad pattern never matches");
});

Deno.test("iam: Terraform and the documented oci commands grant the same thing", () => {
  const tf = Deno.readTextFileSync(new URL("../config/iam.tf", import.meta.url));
  const notes = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  assert.match(tf, /resource "oci_identity_dynamic_group"/);
  assert.match(tf, /resource "oci_identity_policy"/);
  assert.match(
    tf,
    /matching_rule += "All \{instance\.compartment\.id = '\$\{var\.compartment_ocid\}'\}"/,
  );
  assert.match(
    tf,
    /"Allow dynamic-group \$\{local\.group_reference\} to read repos in \$\{local\.where\}"/,
  );
  assert.match(notes, /--matching-rule "All \{instance\.compartment\.id = '\$NODES'\}"/);
  assert.match(
    notes,
    /Allow dynamic-group oke-credential-provider-nodes to read repos in compartment id \$REPOS/,
  );
  assert.match(notes, /Allow dynamic-group oke-credential-provider-nodes to read repos in tenancy/);
  assert.match(tf, /default += "oke-credential-provider-nodes"/);
});

Deno.test("workload config: kubelet >= 1.34 decodes and validates it; the default has no tokenAttributes", () => {
  const doc = loadConfig(WORKLOAD_CONFIG_PATH);
  assert.deepEqual(validateConfig(doc), []);
  const [provider] = doc.providers as Record<string, unknown>[];
  assert.equal(provider.name, PROVIDER_NAME);
  assert.deepEqual(provider.tokenAttributes, {
    serviceAccountTokenAudience: "https://kubernetes.default.svc.cluster.local",
    cacheType: "ServiceAccount",
    requireServiceAccount: false,
    optionalServiceAccountAnnotationKeys: ["oke-credential-provider.io/pull-identity"],
  });
  assert.deepEqual(provider.matchImages, ourProvider().matchImages, "same registries");
  assert.equal(provider.args, undefined, "settings through env: the no-token path stays as fast");
  const env = Object.fromEntries(
    (provider.env as { name: string; value: string }[]).map((e) => [e.name, e.value]),
  );
  assert.equal(env.OKE_CREDENTIAL_PROVIDER_WORKLOAD_IDENTITY, "oke");
  // The default config stays valid for kubelet 1.26+: no field a kubelet before 1.34 rejects.
  for (const p of loadConfig().providers as Record<string, unknown>[]) {
    assert.equal(p.tokenAttributes, undefined);
  }
  // The RBAC manifest grants exactly the configured audience to the nodes.
  const rbac = Deno.readTextFileSync(
    new URL("../config/rbac-workload-identity.yaml", import.meta.url),
  )
    .split(/^---$/m).map((d) => parse(d));
  assert.deepEqual(rbac[0].rules, [{
    apiGroups: [""],
    resources: [
      (provider.tokenAttributes as { serviceAccountTokenAudience: string })
        .serviceAccountTokenAudience,
    ],
    verbs: ["request-serviceaccounts-token-audience"],
  }]);
  assert.deepEqual(rbac[1].subjects, [{
    apiGroup: "rbac.authorization.k8s.io",
    kind: "Group",
    name: "system:nodes",
  }]);
  assert.equal(rbac[1].roleRef.name, rbac[0].metadata.name);
});

Deno.test("validation: tokenAttributes as kubelet checks them", () => {
  const good = () =>
    goodConfig({
      tokenAttributes: {
        serviceAccountTokenAudience: "a",
        cacheType: "ServiceAccount",
        requireServiceAccount: false,
        optionalServiceAccountAnnotationKeys: ["oke-credential-provider.io/pull-identity"],
      } as Record<string, unknown>,
    });
  assert.deepEqual(validateConfig(good()), []);
  const broken: [string, (t: Record<string, unknown>, c: ReturnType<typeof good>) => void][] = [
    ["no audience", (t) => delete t.serviceAccountTokenAudience],
    ["empty audience", (t) => t.serviceAccountTokenAudience = ""],
    ["no cacheType", (t) => delete t.cacheType],
    ["bad cacheType", (t) => t.cacheType = "Registry"],
    ["no requireServiceAccount", (t) => delete t.requireServiceAccount],
    ["string requireServiceAccount", (t) => t.requireServiceAccount = "false"],
    [
      "required keys without requireServiceAccount",
      (t) => t.requiredServiceAccountAnnotationKeys = ["a.io/b"],
    ],
    ["bad annotation key", (t) => t.optionalServiceAccountAnnotationKeys = ["a b"]],
    ["duplicate key", (t) => t.optionalServiceAccountAnnotationKeys = ["a", "a"]],
    ["unknown field", (t) => t.audience = "x"],
    [
      "v1beta1 plugin",
      (_, c) => c.providers[0].apiVersion = "credentialprovider.kubelet.k8s.io/v1beta1",
    ],
  ];
  for (const [what, breakIt] of broken) {
    const c = good();
    breakIt(c.providers[0].tokenAttributes, c);
    assert.notDeepEqual(validateConfig(c), [], what);
  }
  const both = good();
  Object.assign(both.providers[0].tokenAttributes, {
    requireServiceAccount: true,
    requiredServiceAccountAnnotationKeys: ["oke-credential-provider.io/pull-identity"],
  });
  assert.notDeepEqual(validateConfig(both), [], "a key both required and optional");
});
