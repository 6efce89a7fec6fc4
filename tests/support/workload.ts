/** The plugin's per-workload flags for each backend against the emulator (issue 14's tests). */
import type { Cluster, Emulator } from "../emulator/mod.ts";
import { cacheRoot } from "./plugin_process.ts";

/**
 * A copy of `file` where the plugin under test may read it: under its cache root, the one place
 * the release permissions open (with `deno run` or OKE_CP_TEST_BINARY alike).
 */
export function readableCopy(file: string): string {
  const dir = Deno.makeTempDirSync({ dir: cacheRoot(), prefix: "ca-" });
  const copy = `${dir}/${file.split("/").pop()}`;
  Deno.copyFileSync(file, copy);
  return copy;
}

/** `--workload-identity oke` with the emulated cluster's proxymux and (a readable copy of) CA. */
export function okeArgs(cluster: Cluster, clusterCa = readableCopy(cluster.caFile)): string[] {
  return [
    "--workload-identity",
    "oke",
    "--proxymux-url",
    cluster.proxymuxUrl,
    "--cluster-ca",
    clusterCa,
  ];
}

/** `--workload-identity federation` with the emulated identity domain. */
export function federationArgs(emu: Emulator, tokenType: "upst" | "rpst" = "upst"): string[] {
  return [
    "--workload-identity",
    "federation",
    "--identity-domain-url",
    `https://${emu.identityDomainHost}`,
    "--federation-token-type",
    tokenType,
  ];
}
