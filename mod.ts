/**
 * oke-credential-provider: kubelet's image credential provider for OCI Registry (OCIR).
 *
 * Kubelet writes a CredentialProviderRequest to stdin; we answer on stdout with a docker token
 * for the image's OCIR host, obtained with the node's own identity (instance principals). This
 * file only wires the steps; each lives in `lib/`. The warm path (a cached token) loads only the
 * modules imported here; the cold path's are imported on demand.
 *
 * @module
 */

import { readDockerToken } from "./lib/cache.ts";
import type { Step } from "./lib/errors.ts";
import { deadline, deadlineError } from "./lib/deadline.ts";
import { ocirHost, parseImage } from "./lib/image.ts";
import { formatResponse, readRequest } from "./lib/kubelet.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { type Options, parseOptions, USAGE } from "./lib/options.ts";
import { VERSION } from "./lib/version.ts";

async function print(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(`${text}\n`);
  for (let at = 0; at < bytes.length;) at += await Deno.stdout.write(bytes.subarray(at));
}

/** Answers kubelet's request. */
async function provide(
  options: Options,
  log: Logger,
  progress: { step: Step },
  armWatchdog: () => void,
): Promise<void> {
  const request = await readRequest(Deno.stdin, armWatchdog);
  progress.step = "image";
  const image = parseImage(request.image);
  const registry = ocirHost(image.registry);
  if (!registry) {
    log.warn(
      "image",
      `${image.registry} is not an OCIR registry host: answering with no credentials`,
    );
    return await print(formatResponse(request.apiVersion, null, 0));
  }
  progress.step = "cache";
  let entry = await readDockerToken(options.cacheDir, registry.host);
  if (!entry) {
    armWatchdog();
    const { obtainDockerToken } = await import("./lib/credentials.ts");
    entry = await obtainDockerToken(registry, {
      cacheDir: options.cacheDir,
      imdsBaseUrl: options.imdsBaseUrl,
      federationEndpoint: options.federationEndpoint,
      deadline: deadline(options.timeoutSeconds),
      log,
      checkPull: options.checkPull ? image : undefined,
    });
  }
  const seconds = entry.refreshAt - Date.now() / 1000;
  await print(
    formatResponse(request.apiVersion, { host: image.registry, password: entry.token }, seconds),
  );
}

async function main(): Promise<number> {
  let log = createLogger("warn");
  const progress: { step: Step } = { step: "arguments" };
  try {
    const options = await parseOptions(Deno.args);
    log = createLogger(options.logLevel);
    if (options.command === "help") return await print(USAGE), 0;
    if (options.command === "version") return await print(`oke-credential-provider ${VERSION}`), 0;
    // A last guard for what no request timeout covers (a stdin that never closes): one line,
    // exit 1. Armed only off the warm path: a Deno process's first timer costs ~5 ms.
    let armed = false;
    const armWatchdog = () => {
      if (armed) return;
      armed = true;
      const ms = options.timeoutSeconds * 1000 + 1000 - performance.now();
      Deno.unrefTimer(setTimeout(() => {
        log.failure(deadlineError(progress.step));
        Deno.exit(1);
      }, Math.max(0, ms)));
    };
    if (options.command === "doctor") {
      armWatchdog();
      return await (await import("./lib/doctor.ts")).doctor(options, log);
    }
    progress.step = "request";
    await provide(options, log, progress, armWatchdog);
    return 0;
  } catch (e) {
    log.failure(e);
    return 1;
  }
}

Deno.exit(await main());
