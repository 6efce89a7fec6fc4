/**
 * Finds the external programs a test needs, and decides what a missing one means: under CI it is
 * a failure (the CI script installs them, so a missing tool is a broken setup, never a reason to
 * pass quietly); elsewhere the test may be skipped, with the reason printed.
 */

/** The path of `name` in the directories of `path` (a PATH value), or undefined. */
export function findTool(name: string, path: string): string | undefined {
  for (const dir of path.split(":").filter((d) => d !== "")) {
    const candidate = `${dir}/${name}`;
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** What to do about a test's tools. */
export interface ToolGate {
  /** Tools not found in PATH. */
  missing: string[];
  /** Register the test as ignored (only outside CI). */
  ignore: boolean;
  /** Under CI with tools missing: the message the test must fail with. */
  failure?: string;
  /** Outside CI with tools missing: why the test is skipped, for the caller to print. */
  skipReason?: string;
}

/**
 * Checks `names` against `env.PATH`; `env.CI === "true"` turns a missing tool into a failure.
 * Outside CI a missing tool gives a skip reason.
 */
export function toolGate(
  names: string[],
  env: { PATH?: string; CI?: string },
): ToolGate {
  const missing = names.filter((name) => findTool(name, env.PATH ?? "") === undefined);
  if (missing.length === 0) return { missing, ignore: false };
  const what = `${missing.join(" and ")} not found in PATH`;
  if (env.CI === "true") {
    return {
      missing,
      ignore: false,
      failure: `${what}: under CI a missing tool fails the test (install it: apt-get install -y ${
        missing.join(" ")
      })`,
    };
  }
  return { missing, ignore: true, skipReason: what };
}
