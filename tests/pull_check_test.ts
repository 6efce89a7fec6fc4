import assert from "node:assert/strict";
import { parseChallenge } from "../lib/pull_check.ts";

Deno.test("parseChallenge reads a registry's Bearer challenge, any case, any order", () => {
  assert.deepEqual(
    parseChallenge(
      'Bearer realm="https://iad.ocir.io/20180419/docker/token",service="iad.ocir.io",scope="repository:ns/app:pull"',
    ),
    {
      realm: "https://iad.ocir.io/20180419/docker/token",
      service: "iad.ocir.io",
      scope: "repository:ns/app:pull",
    },
  );
  assert.deepEqual(parseChallenge('bearer Service="s", Realm="https://r/t"'), {
    service: "s",
    realm: "https://r/t",
  });
  assert.equal(parseChallenge('Basic realm="x"'), undefined);
  assert.equal(parseChallenge(null), undefined);
  assert.deepEqual(parseChallenge("Bearer"), undefined);
  assert.deepEqual(parseChallenge("Bearer "), {});
});
