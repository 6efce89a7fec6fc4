/**
 * Issue 5 on the emulator: every scenario of fault_scenarios.ts (deadlines, retries, errors never
 * retried, bad answers from IMDS, the auth service and OCIR, odd image references, an unusable
 * cache, untrusted TLS), run as kubelet runs the plugin, at the default log level; each run's
 * stderr is also checked for secrets.
 */
import { emulatorTest } from "./support/emulator.ts";
import { runScenario, SCENARIOS, SecretWatch } from "./support/fault_scenarios.ts";

emulatorTest(
  "faults: every scenario ends as the operator is promised, in one line",
  async (t, rig) => {
    const watch = new SecretWatch();
    for (const scenario of SCENARIOS) {
      await t.step(scenario.name, async () => {
        await watch.addIdentity(rig.emu);
        const { run } = await runScenario(rig, scenario, {
          inspect: (run, dir) => watch.harvest(run, dir),
        });
        watch.assertClean(run.stderr, scenario.name);
      });
    }
  },
);
