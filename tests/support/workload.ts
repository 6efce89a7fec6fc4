/** The plugin's per-workload flags for each backend against the emulator (issue 14's tests). */
import type { Cluster, Emulator } from "../emulator/mod.ts";

/** `--workload-identity oke` with the emulated cluster's proxymux and CA. */
export function okeArgs(cluster: Cluster): string[] {
  return [
    "--workload-identity",
    "oke",
    "--proxymux-url",
    cluster.proxymuxUrl,
    "--cluster-ca",
    cluster.caFile,
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
