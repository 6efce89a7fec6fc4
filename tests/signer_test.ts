import assert from "node:assert/strict";
import { DefaultRequestSigner, SimpleAuthenticationDetailsProvider } from "oci-common";
import { generateSessionKey } from "../lib/federation.ts";
import { headersToSign, type OutgoingRequest, signingString, signRequest } from "../lib/signer.ts";
import { importPrivateKey } from "../lib/x509.ts";

const dir = new URL("./fixtures/signing-vectors/", import.meta.url);
const vectors = JSON.parse(await Deno.readTextFile(new URL("vectors.json", dir)));
const { key } = await importPrivateKey(
  await Deno.readTextFile(new URL("key.pem", dir)),
  "vector key",
);

for (const v of vectors.cases) {
  Deno.test(`signer reproduces the published ${v.name} vector`, async () => {
    const body = v.bodyFile ? await Deno.readFile(new URL(v.bodyFile, dir)) : undefined;
    const request: OutgoingRequest = {
      method: v.method,
      url: new URL(v.url),
      headers: new Headers({
        date: v.date,
        ...(v.contentType ? { "content-type": v.contentType } : {}),
      }),
      body,
    };
    const names = v.signedHeaders.split(" ");
    assert.deepEqual(names, headersToSign(v.method));
    await signRequest(request, { keyId: vectors.keyId, key }, names);
    assert.equal(
      signingString(request, names),
      await Deno.readTextFile(new URL(v.signingStringFile, dir)),
    );
    if (body) {
      assert.equal(request.headers.get("x-content-sha256"), v.xContentSha256);
      assert.equal(request.headers.get("content-length"), String(v.contentLength));
    }
    const authorization = request.headers.get("authorization")!;
    assert.equal(
      authorization,
      `Signature version="1",keyId="${vectors.keyId}",algorithm="rsa-sha256",headers="${v.signedHeaders}",signature="${v.signature}"`,
    );
  });
}

Deno.test("signer hashes an empty body as the published empty SHA-256", async () => {
  const request = { method: "PUT", url: new URL("https://h/x"), headers: new Headers() };
  await signRequest(request, { keyId: "k", key });
  assert.equal(request.headers.get("x-content-sha256"), vectors.emptyBodySha256);
  assert.equal(request.headers.get("content-length"), "0");
});

Deno.test("signer refuses to sign a header that is not set", () => {
  const request = { method: "GET", url: new URL("https://h/x"), headers: new Headers() };
  assert.throws(() => signingString(request, ["date"]), /date is to be signed but is not set/);
});

const param = (authorization: string | null, name: string) =>
  new RegExp(`${name}="([^"]*)"`).exec(authorization ?? "")?.[1];

// oci-common signs `x-date` where we sign `date`, and lists the body headers in another order and
// case; signing the same header list with the same values, both must produce the same signature
// (RSASSA-PKCS1-v1_5 is deterministic).
Deno.test("signer agrees with oci-common's DefaultRequestSigner on generated requests", async () => {
  const pair = await generateSessionKey();
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey)).toBase64();
  const pem = `-----BEGIN PRIVATE KEY-----\n${
    pkcs8.match(/.{1,64}/g)!.join("\n")
  }\n-----END PRIVATE KEY-----\n`;
  const provider = new SimpleAuthenticationDetailsProvider(
    "ocid1.tenancy.oc1..t",
    "ocid1.user.oc1..u",
    "aa:bb",
    pem,
    null,
  );
  const reference = new DefaultRequestSigner(provider);
  const hosts = [
    "iad.ocir.io",
    "ocir.eu-frankfurt-1.oci.oraclecloud.com",
    "auth.uk-gov-london-1.oraclegovcloud.uk:8443",
  ];
  const paths = ["/20180419/docker/token", "/v1/x509", "/n/ns/b/bucket/o/a%20b%2Fc", "/"];
  const queries = [
    "",
    "?service=iad.ocir.io&scope=repository%3Ans%2Frepo%3Apull",
    "?a=1&a=2&empty=",
  ];
  const bodies = ['{"certificate":"MIIB","publicKey":"MIIB"}', '{"name":"Zoë ✓ 日本"}', ""];
  let compared = 0;
  for (const [i, host] of hosts.entries()) {
    for (const [j, path] of paths.entries()) {
      const method = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"][(i + j) % 6];
      const uri = `https://${host}${path}${queries[(i + j) % 3]}`;
      const text = ["POST", "PUT", "PATCH"].includes(method) ? bodies[(i * 3 + j) % 3] : undefined;
      const date = new Date(Date.UTC(2026, i, j + 1, i, j, 7)).toUTCString();
      const theirs = {
        uri,
        method: method as "GET",
        headers: new Headers({ "x-date": date }),
        body: text,
      };
      await reference.signHttpRequest(theirs);
      const ours: OutgoingRequest = {
        method,
        url: new URL(uri),
        headers: new Headers({ "x-date": date, date }),
        body: text === undefined ? undefined : new TextEncoder().encode(text),
      };
      const names = param(theirs.headers.get("authorization"), "headers")!.toLowerCase().split(" ");
      assert.deepEqual(
        [...names].sort(),
        headersToSign(method).map((n) => n === "date" ? "x-date" : n).sort(),
        "both sign the same set of headers",
      );
      await signRequest(ours, {
        keyId: "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/aa:bb",
        key: pair.privateKey,
      }, names);
      const [a, b] = [ours, theirs].map((r) => r.headers.get("authorization"));
      assert.equal(param(a, "signature"), param(b, "signature"), `${method} ${uri}`);
      assert.equal(param(a, "keyId"), param(b, "keyId"));
      if (text !== undefined) {
        assert.equal(ours.headers.get("x-content-sha256"), theirs.headers.get("x-content-sha256"));
        assert.equal(ours.headers.get("content-length"), theirs.headers.get("content-length"));
      }
      compared++;
    }
  }
  assert.equal(compared, hosts.length * paths.length);
});
