/**
 * Issue 5 on the emulator: every scenario of fault_scenarios.ts (deadlines, retries, errors never
 * retried, bad answers from IMDS, the auth service and OCIR, odd image references, an unusable
 * cache, untrusted TLS), run as kubelet runs the plugin, at the default log level; each run's
 * stderr is also checked for secrets.
 */
import { runScenario, SCENARIOS, SecretWatch, startBench } from "./fault_scenarios.ts";

Deno.test({
  name: "faults: every scenario ends as the operator is promised, in one line",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const bench = await startBench();
    const watch = new SecretWatch();
    try {
      for (const scenario of SCENARIOS) {
        await t.step(scenario.name, async () => {
          await watch.addIdentity(bench.emu);
          const { run } = await runScenario(bench, scenario, {
            inspect: (run, dir) => watch.harvest(run, dir),
          });
          watch.assertClean(run.stderr, scenario.name);
        });
      }
    } finally {
      await bench.emu.close();
    }
  },
});
