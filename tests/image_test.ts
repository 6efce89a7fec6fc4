import assert from "node:assert/strict";
import { ocirHost, parseImage } from "../lib/image.ts";
import { PluginError } from "../lib/errors.ts";
import { REGIONS } from "../lib/regions.ts";

const digest = `sha256:${"ab".repeat(32)}`;

Deno.test("parseImage splits host, repository, tag and digest", () => {
  const table: [string, ReturnType<typeof parseImage>][] = [
    ["iad.ocir.io/ns/app:1.2", { registry: "iad.ocir.io", repository: "ns/app", tag: "1.2" }],
    ["iad.ocir.io/ns/app", { registry: "iad.ocir.io", repository: "ns/app" }],
    [`iad.ocir.io/ns/app@${digest}`, { registry: "iad.ocir.io", repository: "ns/app", digest }],
    [`iad.ocir.io/ns/a/b/c:v1@${digest}`, {
      registry: "iad.ocir.io",
      repository: "ns/a/b/c",
      tag: "v1",
      digest,
    }],
    ["ocir.us-ashburn-1.oci.oraclecloud.com/ns/app:x", {
      registry: "ocir.us-ashburn-1.oci.oraclecloud.com",
      repository: "ns/app",
      tag: "x",
    }],
    ["localhost:5000/app:1", { registry: "localhost:5000", repository: "app", tag: "1" }],
    ["registry.example.com:443/a_b/c-d.e__f", {
      registry: "registry.example.com:443",
      repository: "a_b/c-d.e__f",
    }],
    ["nginx", { registry: "docker.io", repository: "nginx" }],
    // IPv6 literal registries, as Distribution's grammar allows them: not OCIR, but valid.
    ["[2001:db8::1]:5000/app", { registry: "[2001:db8::1]:5000", repository: "app" }],
    ["[::1]/ns/app:1", { registry: "[::1]", repository: "ns/app", tag: "1" }],
    ["library/nginx:latest", { registry: "docker.io", repository: "library/nginx", tag: "latest" }],
  ];
  for (const [reference, expected] of table) {
    assert.deepEqual(parseImage(reference), expected, reference);
  }
});

Deno.test("parseImage rejects malformed references with an image-step error", () => {
  const bad = [
    "",
    "iad.ocir.io/",
    "iad.ocir.io/NS/app",
    "iad.ocir.io/ns//app",
    "iad.ocir.io/ns/app:",
    "iad.ocir.io/ns/app:-bad",
    `iad.ocir.io/ns/app@sha256:short`,
    "iad.ocir.io/ns/app@",
    "-bad.io/ns/app",
    "iad..ocir.io/ns/app",
    "iad.ocir.io:99999x/ns/app",
    "iad.ocir.io/ns/app\n",
    "iad.ocir.io/ns/app dev",
    "iad.ocir.io/ns/ápp",
    "iad.ocir.io/ns/app:" + "t".repeat(129),
    "iad.ocir.io/" + "a".repeat(300),
    "iad.ocir.io/ns/app;rm -rf",
    "../../etc/passwd",
    "[::1/app",
    "[2001:db8::zz]/app",
    "[::1]x/app",
    "[::1]:99999x/app",
  ];
  for (const reference of bad) {
    assert.throws(
      () => parseImage(reference),
      (e) => e instanceof PluginError && e.step === "image",
      JSON.stringify(reference),
    );
  }
});

Deno.test("ocirHost recognises every OCIR host form of every region", () => {
  for (const r of REGIONS) {
    const forms = [`ocir.${r.regionId}.oci.${r.realmDomain}`];
    if (r.realmKey === "oc1") forms.push(`${r.regionKey}.ocir.io`, `${r.regionId}.ocir.io`);
    for (const host of forms) {
      assert.deepEqual(
        ocirHost(host),
        { host, realmDomain: r.realmDomain, knownRealm: true },
        host,
      );
    }
  }
});

Deno.test("ocirHost lower-cases and marks unknown realms for the node's own realm to vouch for", () => {
  assert.equal(ocirHost("IAD.OCIR.IO")?.host, "iad.ocir.io");
  assert.deepEqual(ocirHost("ocir.us-dedicated-1.oci.example-dedicated.com"), {
    host: "ocir.us-dedicated-1.oci.example-dedicated.com",
    realmDomain: "example-dedicated.com",
    knownRealm: false,
  });
});

Deno.test("ocirHost refuses every other host", () => {
  const foreign = [
    "docker.io",
    "ghcr.io",
    "ocir.io",
    "ocir.io.evil.com",
    "iad.ocir.io.evil.com",
    "evil.com",
    "iad.ocir.io:443",
    "iad.ocir.io:5000",
    "a.b.ocir.io",
    "ocir.us-ashburn-1.oci",
    "ocir.us-ashburn-1.oraclecloud.com",
    "xocir.us-ashburn-1.oci.oraclecloud.com",
    "ocir..oci.oraclecloud.com",
    "localhost",
    "127.0.0.1",
  ];
  for (const host of foreign) assert.equal(ocirHost(host), undefined, host);
});
