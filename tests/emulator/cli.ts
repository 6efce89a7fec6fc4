/**
 * `deno task emulator`: runs the OCI emulator until SIGINT/SIGTERM. Prints the environment a
 * plugin needs as `export NAME=VALUE` lines on stdout (so `eval "$(…)"` works) and logs every
 * request on stderr.
 */
import { parseArgs } from "node:util";
import { type RequestLogEntry, startEmulator } from "./mod.ts";

const USAGE = `usage: deno task emulator [options]
  --region ID            home region id (default us-ashburn-1)
  --realm-domain DOMAIN  realm domain (default: from the region table)
  --region-key KEY       region key, for regions not in the table (e.g. DRX)
  --realm-key KEY        realm key, when the domain does not tell it
  --token-ttl SECONDS    security token lifetime (default 1200)
  --docker-token-ttl S   OCIR docker token lifetime (default 3600)
  --port PORT            base port: IMDS on PORT, proxy on PORT+1 (default 0: random)
  --help                 this text`;

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`--${name} wants a whole number, got ${value}`);
  }
  return n;
}

/** Quotes a value for a POSIX shell only when it needs it. */
function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

function logLine(e: RequestLogEntry): string {
  const time = new Date(e.at).toISOString().slice(11, 23);
  const query = e.query ? `?${e.query}` : "";
  const status = e.status === 0 ? "---" : String(e.status);
  const reason = e.reason ? `  (${e.reason})` : "";
  return `${time} ${
    e.service.padEnd(5)
  } ${e.method} ${e.host}${e.path}${query} -> ${status}${reason}`;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        region: { type: "string" },
        "realm-domain": { type: "string" },
        "region-key": { type: "string" },
        "realm-key": { type: "string" },
        "token-ttl": { type: "string" },
        "docker-token-ttl": { type: "string" },
        port: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const emu = await startEmulator({
    region: values.region,
    realmDomain: values["realm-domain"],
    regionKey: values["region-key"],
    realmKey: values["realm-key"],
    tokenTtl: number("token-ttl", values["token-ttl"]),
    dockerTokenTtl: number("docker-token-ttl", values["docker-token-ttl"]),
    port: number("port", values.port),
    onRequest: (e) => console.error(logLine(e)),
  });
  for (const [name, value] of Object.entries(emu.env)) {
    console.log(`export ${name}=${shellQuote(value)}`);
  }
  console.error(
    [
      `OCI emulator: region ${emu.region.regionId} (${emu.region.regionKey}, ${emu.region.realmKey} ${emu.region.realmDomain})`,
      `  tenancy     ${emu.instance.tenancy}`,
      `  compartment ${emu.instance.compartment}`,
      `  instance    ${emu.instance.instanceId}`,
      `  namespace   ${emu.namespace}  (try image ${emu.registryHost}/${emu.namespace}/app:1.0)`,
      `  hosts       ${emu.hosts.join(" ")}`,
      `serving until interrupted`,
    ].join("\n"),
  );
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    Deno.addSignalListener("SIGTERM", resolve);
  });
  await emu.close();
  return 0;
}

Deno.exit(await main());
