/**
 * The emulator's per-workload identity services, judged with the independent test client
 * (tests/emulator/client.ts), not the plugin: the cluster's service-account issuer, proxymux
 * (TLS with the cluster CA; signature, issuer, audience, expiry; 403 when not enhanced), the
 * identity domain's token exchange (instance-principal signature, trust, UPST/RPST), and OCIR's
 * per-workload policy (A's token reads A's repository, not B's).
 */
import assert from "node:assert/strict";
import { decodeJwt } from "jose";
import {
  dockerToken,
  emulatorClient,
  federate,
  sessionKeyPair,
  signedFetch,
} from "./emulator/client.ts";
import { startEmulator } from "./emulator/mod.ts";

const A = { namespace: "team-a", name: "puller", uid: crypto.randomUUID() };
const B = { namespace: "team-b", name: "puller", uid: crypto.randomUUID() };

/** The actions a registry (Distribution) token grants on `repo`, via the realm as skopeo asks. */
async function granted(
  client: Deno.HttpClient,
  host: string,
  docker: string,
  repo: string,
): Promise<string[]> {
  const url = `https://${host}/20180419/docker/token?service=${host}&scope=repository:${repo}:pull`;
  const res = await fetch(url, {
    headers: { authorization: `Basic ${btoa(`BEARER_TOKEN:${docker}`)}` },
    client,
  });
  assert.equal(res.status, 200);
  const { token } = await res.json();
  const access = decodeJwt(token).access as { name: string; actions: string[] }[];
  return access.find((a) => a.name === repo)?.actions ?? [];
}

Deno.test({
  name: "emulator: proxymux and the identity domain exchange, and per-workload OCIR policy",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const emu = await startEmulator();
    const client = await emulatorClient(emu.env);
    const cluster = await emu.startCluster();
    const clusterTls = Deno.createHttpClient({ caCerts: [cluster.caPem] });
    const host = emu.registryHost;
    const repoA = `${emu.namespace}/team-a/app`, repoB = `${emu.namespace}/team-b/app`;
    emu.grantWorkload({ namespace: "team-a", serviceAccount: "puller", repository: "team-a/app" });
    emu.grantWorkload({ namespace: "team-b", serviceAccount: "puller", repository: "team-b/app" });

    const proxymux = async (token: string, podKey?: string) => {
      const key = podKey ?? `-----BEGIN PUBLIC KEY-----\n${(await sessionKeyPair()).spki}\n` +
          "-----END PUBLIC KEY-----";
      return await fetch(cluster.proxymuxUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ podKey: key }),
        client: clusterTls,
      });
    };
    const exchangeViaProxymux = async (sa: typeof A) => {
      const { keys, spki } = await sessionKeyPair();
      const res = await proxymux(
        await cluster.mintServiceAccountToken(sa),
        `-----BEGIN PUBLIC KEY-----\n${spki}\n-----END PUBLIC KEY-----`,
      );
      assert.equal(res.status, 200);
      const literal = await res.json();
      assert.equal(typeof literal, "string", "a JSON string literal");
      const inner = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(literal)));
      assert.match(inner.token, /^ST\$/);
      return { token: inner.token.slice(3), session: keys };
    };

    try {
      await t.step(
        "proxymux: each service account's docker token reads only its repository",
        async () => {
          for (const [sa, own, other] of [[A, repoA, repoB], [B, repoB, repoA]] as const) {
            const st = await exchangeViaProxymux(sa);
            const docker = await dockerToken(client, host, st);
            assert.deepEqual(await granted(client, host, docker, own), ["pull"]);
            assert.deepEqual(await granted(client, host, docker, other), []);
            assert.deepEqual(await granted(client, host, docker, `${emu.namespace}/app`), []);
          }
        },
      );

      await t.step(
        "proxymux refuses expired, forged, wrong-audience and foreign tokens",
        async () => {
          const cases: [string, Promise<string>, RegExp][] = [
            [
              "expired",
              cluster.mintServiceAccountToken(A, { ttl: 600, ageSeconds: 1200 }),
              /"exp"/,
            ],
            ["forged", cluster.mintServiceAccountToken(A, { forged: true }), /signature/],
            ["audience", cluster.mintServiceAccountToken(A, { audience: "other" }), /"aud"/],
            ["issuer", cluster.mintServiceAccountToken(A, { issuer: "https://x" }), /"iss"/],
          ];
          for (const [what, token, why] of cases) {
            const res = await proxymux(await token);
            assert.equal(res.status, 401, what);
            const body = await res.json();
            assert.equal(body.code, "NotAuthenticated", what);
            assert.match(body.message, why, what);
          }
          assert.equal((await proxymux("not-a-jwt")).status, 401);
          assert.equal((await proxymux(await cluster.mintServiceAccountToken(A), "x")).status, 400);
        },
      );

      await t.step("proxymux's TLS is the cluster CA's, not the cloud's", async () => {
        const cloudTls = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(emu.caFile)] });
        try {
          await assert.rejects(
            fetch(cluster.proxymuxUrl, { method: "POST", client: cloudTls }),
            (e: Error) => /UnknownIssuer|invalid peer certificate/i.test(String(e.cause)),
          );
        } finally {
          cloudTls.close();
        }
      });

      await t.step("proxymux: 403 when the cluster is not an enhanced cluster", async () => {
        cluster.enhanced = false;
        try {
          const res = await proxymux(await cluster.mintServiceAccountToken(A));
          assert.equal(res.status, 403);
          await res.body?.cancel();
        } finally {
          cluster.enhanced = true;
        }
      });

      const exchange = async (
        st: { token: string; session: CryptoKeyPair },
        fields: Record<string, string>,
      ) =>
        await signedFetch(client, {
          method: "POST",
          url: `https://${emu.identityDomainHost}/oauth2/v1/token`,
          keyId: `ST$${st.token}`,
          privateKey: st.session.privateKey,
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams(fields).toString(),
        });
      const node = await federate(client, emu.env.OCI_METADATA_BASE_URL, emu.hosts[0]);
      const form = async (sa: typeof A, type: "upst" | "rpst") => {
        const { keys, spki } = await sessionKeyPair();
        return {
          keys,
          fields: {
            grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
            requested_token_type: `urn:oci:token-type:oci-${type}`,
            subject_token: await cluster.mintServiceAccountToken(sa),
            subject_token_type: "jwt",
            public_key: spki,
            ...(type === "rpst" ? { res_type: "k8sworkload" } : {}),
          },
        };
      };

      await t.step(
        "identity domain: no trust → invalid_grant; unsigned → invalid_client",
        async () => {
          const { fields } = await form(A, "upst");
          const res = await exchange(node, fields);
          assert.equal(res.status, 400);
          const body = await res.json();
          assert.equal(body.error, "invalid_grant");
          assert.match(body.error_description, /no identity propagation trust/);
          const unsigned = await fetch(`https://${emu.identityDomainHost}/oauth2/v1/token`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams(fields),
            client,
          });
          assert.equal(unsigned.status, 401);
          assert.equal((await unsigned.json()).error, "invalid_client");
        },
      );

      emu.trusts.push({ issuer: cluster.issuer, jwks: cluster.jwks });

      await t.step("identity domain: UPST and RPST read only their own repository", async () => {
        for (const type of ["upst", "rpst"] as const) {
          for (const [sa, own, other] of [[A, repoA, repoB], [B, repoB, repoA]] as const) {
            const { keys, fields } = await form(sa, type);
            const res = await exchange(node, fields);
            const body = await res.json();
            assert.equal(res.status, 200, JSON.stringify(body));
            const docker = await dockerToken(client, host, { token: body.token, session: keys });
            assert.deepEqual(await granted(client, host, docker, own), ["pull"], type);
            assert.deepEqual(await granted(client, host, docker, other), [], type);
          }
        }
      });

      await t.step(
        "identity domain refuses forged subjects and a missing exchange policy",
        async () => {
          const { fields } = await form(A, "upst");
          fields.subject_token = await cluster.mintServiceAccountToken(A, { forged: true });
          const forged = await exchange(node, fields);
          assert.equal(forged.status, 400);
          assert.match((await forged.json()).error_description, /signature/);
          const rpst = await form(A, "rpst");
          delete (rpst.fields as Record<string, string>).res_type;
          assert.equal((await exchange(node, rpst.fields)).status, 400);
          emu.allowTokenExchange = false;
          const denied = await exchange(node, (await form(A, "upst")).fields);
          assert.equal(denied.status, 401);
          assert.equal((await denied.json()).error, "unauthorized_client");
          emu.allowTokenExchange = true;
        },
      );
    } finally {
      clusterTls.close();
      client.close();
      await emu.close();
    }
  },
});
