/**
 * Kubelet's `matchImages` / `auth` key matching, re-implemented for tests (PROTOCOL.md §1).
 *
 * Kubelet parses pattern and image as `https://` URLs with Go's `net/url`, splits the host with
 * `net.SplitHostPort`, requires equal ports, an equal number of dot-separated host labels and the
 * pattern's path as a prefix of the image's path, and matches each label with Go's `path.Match`.
 * The WHATWG `URL` class is not used on purpose: it lower-cases hosts and drops `:443`, which Go
 * keeps, so it would answer differently from kubelet for some inputs.
 *
 * @module
 */

/** Thrown where Go returns an error (kubelet then treats the pattern as not matching). */
export class GoError extends Error {}

/** The parts of a Go `url.URL` that kubelet looks at. */
export interface SchemelessURL {
  /** Host with optional `:port`, as Go's `URL.Host`. */
  host: string;
  /** Decoded path, as Go's `URL.Path`. */
  path: string;
}

// Characters Go's url package accepts unescaped in a host (besides letters and digits).
const HOST_CHARS = new Set("-_.~!$&'()*+,;=:[]<>\"");

/** `url.Parse("https://" + s)` as kubelet's `ParseSchemelessURL` does, keeping Host and Path. */
export function parseSchemelessURL(s: string): SchemelessURL {
  const raw = "https://" + s;
  for (const c of raw) {
    const code = c.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) throw new GoError("invalid control character in URL");
  }
  let rest = raw.slice("https:".length);
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  const query = rest.indexOf("?");
  if (query >= 0) rest = rest.slice(0, query);
  // rest starts with "//": the authority runs to the first "/".
  let authority = rest.slice(2);
  let path = "";
  const slash = authority.indexOf("/");
  if (slash >= 0) [authority, path] = [authority.slice(0, slash), authority.slice(slash)];
  const at = authority.lastIndexOf("@");
  const host = at >= 0 ? authority.slice(at + 1) : authority;
  checkHost(host);
  return { host, path: unescapePath(path) };
}

function checkHost(host: string): void {
  let port: string;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0) throw new GoError("missing ']' in host");
    port = host.slice(end + 1);
  } else {
    const colon = host.lastIndexOf(":");
    port = colon >= 0 ? host.slice(colon) : "";
  }
  if (port !== "" && !/^:[0-9]*$/.test(port)) {
    throw new GoError(`invalid port "${port}" after host`);
  }
  for (const c of host) {
    if (c.codePointAt(0)! >= 0x80 || /[A-Za-z0-9]/.test(c) || HOST_CHARS.has(c)) continue;
    throw new GoError(`invalid character "${c}" in host name`);
  }
}

function unescapePath(path: string): string {
  if (!path.includes("%")) return path;
  const bytes: number[] = [];
  const utf8 = new TextEncoder();
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "%") {
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new GoError(`invalid URL escape "%${hex}"`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...utf8.encode(path[i]));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Go's `net.SplitHostPort`, falling back to (whole, "") on error as kubelet's `SplitURL` does. */
export function splitHostPort(hostport: string): [host: string, port: string] {
  const lastColon = hostport.lastIndexOf(":");
  if (lastColon < 0) return [hostport, ""];
  let host: string;
  if (hostport.startsWith("[")) {
    const end = hostport.indexOf("]");
    if (end < 0 || end + 1 !== lastColon) return [hostport, ""];
    host = hostport.slice(1, end);
    if (hostport.slice(end + 1).includes("]") || hostport.slice(1).includes("[")) {
      return [hostport, ""];
    }
  } else {
    host = hostport.slice(0, lastColon);
    if (host.includes(":") || hostport.includes("[") || hostport.includes("]")) {
      return [hostport, ""];
    }
  }
  return [host, hostport.slice(lastColon + 1)];
}

/** Kubelet's `URLsMatchStr(glob, target)`: does the image `target` fall under `glob`? */
export function urlsMatch(glob: string, target: string): boolean {
  const g = parseSchemelessURL(glob);
  const t = parseSchemelessURL(target);
  const [gHost, gPort] = splitHostPort(g.host);
  const [tHost, tPort] = splitHostPort(t.host);
  if (gPort !== tPort) return false;
  const gLabels = gHost.split(".");
  const tLabels = tHost.split(".");
  if (gLabels.length !== tLabels.length) return false;
  if (!t.path.startsWith(g.path)) return false;
  return gLabels.every((label, i) => pathMatch(label, tLabels[i]));
}

/** Kubelet's plugin selection: an image goes to the provider if any pattern matches it. */
export function imageMatches(matchImages: readonly string[], image: string): boolean {
  return matchImages.some((pattern) => {
    try {
      return urlsMatch(pattern, image);
    } catch (e) {
      if (e instanceof GoError) return false; // kubelet ignores the error: no match
      throw e;
    }
  });
}

// ---- Go's path.Match ----------------------------------------------------------------------

/** One element of a parsed pattern. */
type Term =
  | { kind: "star" }
  | { kind: "any" }
  | { kind: "char"; c: string }
  | { kind: "class"; negated: boolean; ranges: [string, string][] };

/**
 * Go's `path.Match(pattern, name)`: `*` any run of non-`/` characters, `?` one non-`/` character,
 * `[...]` / `[^...]` classes with `a-z` ranges, `\` escapes. A malformed pattern throws (Go's
 * `ErrBadPattern`); Go checks the whole pattern, so a bad pattern never matches.
 */
export function pathMatch(pattern: string, name: string): boolean {
  return matchFrom(parsePattern(pattern), 0, [...name], 0);
}

function parsePattern(pattern: string): Term[] {
  const p = [...pattern];
  const terms: Term[] = [];
  let i = 0;
  // One class member: a character other than `-` and `]`, or any escaped character.
  const member = (): string => {
    if (i >= p.length || p[i] === "-" || p[i] === "]") throw new GoError("syntax error in pattern");
    if (p[i] === "\\") {
      i++;
      if (i >= p.length) throw new GoError("syntax error in pattern");
    }
    return p[i++];
  };
  while (i < p.length) {
    const c = p[i];
    if (c === "*") {
      terms.push({ kind: "star" });
      i++;
    } else if (c === "?") {
      terms.push({ kind: "any" });
      i++;
    } else if (c === "\\") {
      if (i + 1 >= p.length) throw new GoError("syntax error in pattern");
      terms.push({ kind: "char", c: p[i + 1] });
      i += 2;
    } else if (c === "[") {
      i++;
      const negated = p[i] === "^";
      if (negated) i++;
      const ranges: [string, string][] = [];
      while (!(p[i] === "]" && ranges.length > 0)) {
        const lo = member();
        let hi = lo;
        if (p[i] === "-") {
          i++;
          hi = member();
          if (hi.codePointAt(0)! < lo.codePointAt(0)!) throw new GoError("syntax error in pattern");
        }
        ranges.push([lo, hi]);
      }
      i++; // the closing "]"
      terms.push({ kind: "class", negated, ranges });
    } else {
      terms.push({ kind: "char", c });
      i++;
    }
  }
  return terms;
}

function matchFrom(terms: Term[], ti: number, name: string[], ni: number): boolean {
  if (ti === terms.length) return ni === name.length;
  const term = terms[ti];
  if (term.kind === "star") {
    // Try every length of the run, never crossing a "/".
    for (let end = ni; end <= name.length; end++) {
      if (matchFrom(terms, ti + 1, name, end)) return true;
      if (end < name.length && name[end] === "/") return false;
    }
    return false;
  }
  if (ni >= name.length) return false;
  const c = name[ni];
  let ok: boolean;
  if (term.kind === "any") ok = c !== "/"; // as in Go, only `?` and `*` refuse "/"
  else if (term.kind === "char") ok = term.c === c;
  else {
    const cp = c.codePointAt(0)!;
    const inClass = term.ranges.some(([lo, hi]) =>
      lo.codePointAt(0)! <= cp && cp <= hi.codePointAt(0)!
    );
    ok = inClass !== term.negated;
  }
  return ok && matchFrom(terms, ti + 1, name, ni + 1);
}
