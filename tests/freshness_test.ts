import assert from "node:assert/strict";
import {
  backoffSeconds,
  freshness,
  type Lifetime,
  margin,
  REFRESH_FRACTION,
  refreshPoint,
  staleCacheSeconds,
  usableUntil,
} from "../lib/freshness.ts";

const hour: Lifetime = { obtainedAt: 1000, issuedAt: 5000, expiresAt: 8600, refreshAt: 2200 };

Deno.test("the timeline of an hour-long token: fresh, stale, unusable", () => {
  assert.deepEqual(freshness(hour, 1000), { state: "fresh", cacheSeconds: 1200 });
  assert.deepEqual(freshness(hour, 2000), { state: "fresh", cacheSeconds: 200 });
  assert.deepEqual(freshness(hour, 2200), { state: "stale", cacheSeconds: 60 });
  assert.deepEqual(freshness(hour, 4270), { state: "stale", cacheSeconds: 30 }, "never past L − M");
  assert.equal(usableUntil(hour), 1000 + 3600 - 300);
  assert.equal(freshness(hour, 4300).state, "unusable");
  assert.equal(freshness(hour, 9000).state, "unusable");
});

Deno.test("the issuer's clock never matters: only our obtainedAt and the token's own life", () => {
  const skewed = { ...hour, issuedAt: hour.issuedAt - 86400, expiresAt: hour.expiresAt - 86400 };
  assert.deepEqual(freshness(skewed, 2000), freshness(hour, 2000));
});

Deno.test("a clock stepped back: an entry obtained in the future is unusable", () => {
  const judged = freshness(hour, hour.obtainedAt - 86400);
  assert.equal(judged.state, "unusable");
  assert.match((judged as { why: string }).why, /future/);
});

Deno.test("cacheDuration never exceeds the token's life, whatever the file says", () => {
  const corrupt = { ...hour, refreshAt: hour.obtainedAt + 10 * 86400 };
  for (const at of [1000, 2000, 4000]) {
    const judged = freshness(corrupt, at);
    assert.notEqual(judged.state, "unusable");
    if (judged.state !== "unusable") {
      assert.ok(judged.cacheSeconds <= usableUntil(hour) - at, `${judged.cacheSeconds} at ${at}`);
    }
  }
  assert.equal(freshness({ ...hour, expiresAt: hour.issuedAt }, 1000).state, "unusable");
});

Deno.test("a token --check-pull denied is not answered stale", () => {
  const denied = { ...hour, refreshAt: hour.obtainedAt + 120, denied: true };
  assert.equal(freshness(denied, 1100).state, "fresh");
  assert.equal(freshness(denied, 1200).state, "unusable");
});

Deno.test("refresh points: a third of the life, jittered ±10%, spread out", () => {
  assert.equal(refreshPoint(0, 3600, () => 0.5), 3600 * REFRESH_FRACTION);
  assert.equal(Math.round(refreshPoint(0, 3600, () => 0)), 1080);
  assert.equal(Math.round(refreshPoint(0, 3600, () => 1)), 1320);
  const points = new Set(Array.from({ length: 50 }, () => Math.round(refreshPoint(0, 3600))));
  assert.ok(points.size > 25, "a node pool does not refresh in lockstep");
});

Deno.test("an outage of half a token's life from the latest refresh point ends while it is usable", () => {
  for (const life of [30, 60, 1200, 3600, 43200]) {
    const latest = refreshPoint(0, life, () => 1);
    const outageEnds = latest + life / 2;
    const until = usableUntil({ obtainedAt: 0, issuedAt: 0, expiresAt: life, refreshAt: latest });
    assert.ok(outageEnds + backoffSeconds(99, life) <= until + 1e-9, `life ${life}`);
  }
});

Deno.test("margins, stale cache durations and backoff scale with the life, within bounds", () => {
  assert.equal(margin(3600), 300);
  assert.equal(margin(600), 60);
  assert.equal(staleCacheSeconds(3600), 60);
  assert.equal(staleCacheSeconds(600), 10);
  assert.equal(staleCacheSeconds(30), 2);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffSeconds(n, 3600)), [15, 30, 60, 120, 120]);
  assert.equal(backoffSeconds(1, 30), 1);
});
