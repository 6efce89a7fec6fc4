/**
 * The instance's identity documents: PEM decoding, the few certificate fields the plugin needs
 * (subject values, validity, public key, fingerprints) and RSA key import for WebCrypto, all
 * checked so that a truncated PEM or a key that does not belong to the certificate is caught
 * here, with a clear message, instead of as a 401 from the auth service.
 *
 * @module
 */

import { children, DerError, type Element, encode, oid, readElement } from "./der.ts";
import { PluginError } from "./errors.ts";

/** The parts of an X.509 certificate the plugin uses. */
export interface Certificate {
  /** The DER bytes. */
  der: Uint8Array;
  /** Every value of every RDN of the subject, in order. */
  subjectValues: string[];
  notBefore: Date;
  notAfter: Date;
  /** SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
}

const identityError = (what: string, reason: string) =>
  new PluginError("identity", "IDENTITY", `${what} ${reason}`);

/**
 * Decodes the first PEM block with the given label (one of `labels`) to DER bytes.
 *
 * @example
 * ```ts
 * const pem = await Deno.readTextFile("cert.pem");
 * pemToDer(pem, ["CERTIFICATE"], "instance certificate").label; // "CERTIFICATE"
 * ```
 */
export function pemToDer(
  pem: string,
  labels: string[],
  what: string,
): { label: string; der: Uint8Array } {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!match || !labels.includes(match[1])) {
    throw identityError(what, `is not a PEM ${labels.join(" or ")} (truncated or not PEM)`);
  }
  try {
    return { label: match[1], der: Uint8Array.fromBase64(match[2].replace(/\s+/g, "")) };
  } catch {
    throw identityError(what, "has a PEM body that is not base64");
  }
}

function time(element: Element): Date {
  const text = new TextDecoder().decode(element.body);
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) throw new DerError(`unsupported time ${JSON.stringify(text)}`);
  // RFC 5280: two-digit years 50–99 are 19xx.
  const year = m[1].length === 4 ? Number(m[1]) : (Number(m[1]) >= 50 ? 1900 : 2000) + Number(m[1]);
  return new Date(
    Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])),
  );
}

/**
 * Parses a PEM certificate.
 *
 * @example
 * ```ts
 * const leaf = parseCertificate(await Deno.readTextFile("cert.pem"), "instance certificate");
 * leaf.subjectValues; // ["opc-certtype:instance", "opc-compartment:ocid1…", …]
 * ```
 */
export function parseCertificate(pem: string, what: string): Certificate {
  const { der } = pemToDer(pem, ["CERTIFICATE"], what);
  try {
    const cert = readElement(der);
    if (cert.raw.length !== der.length) throw new DerError("trailing bytes");
    const tbs = children(children(cert)[0]);
    const fields = tbs[0].tag === 0xa0 ? tbs.slice(1) : tbs; // skip the explicit version
    const [, , , validity, subject, spki] = fields;
    const [notBefore, notAfter] = children(validity).map(time);
    const subjectValues = children(subject).flatMap((rdn) =>
      children(rdn).map((ava) => new TextDecoder().decode(children(ava)[1].body))
    );
    return { der, subjectValues, notBefore, notAfter, spki: spki.raw };
  } catch (e) {
    if (e instanceof PluginError) throw e;
    throw identityError(what, `is not a valid X.509 certificate (${(e as Error).message})`);
  }
}

/**
 * Finds the tenancy OCID in a certificate subject: the value after `opc-tenant:`, else after
 * `opc-identity:`, looking at every value of every RDN (real certificates put all the OUs in one
 * multi-valued RDN).
 *
 * @example
 * ```ts
 * tenancyOf(["opc-certtype:instance", "opc-tenant:ocid1.tenancy.oc1..aaa"]); // "ocid1.tenancy.oc1..aaa"
 * ```
 */
export function tenancyOf(subjectValues: string[]): string {
  for (const prefix of ["opc-tenant:", "opc-identity:"]) {
    const value = subjectValues.find((v) => v.startsWith(prefix))?.slice(prefix.length);
    if (value) return value;
  }
  throw identityError(
    "instance certificate",
    "has no opc-tenant or opc-identity value in its subject",
  );
}

/**
 * The values after `<prefix>:` in a subject, e.g. `opc-compartment`, or undefined.
 *
 * @example
 * ```ts
 * subjectValue(["opc-instance:ocid1.instance.oc1..x"], "opc-instance"); // "ocid1.instance.oc1..x"
 * ```
 */
export function subjectValue(subjectValues: string[], prefix: string): string | undefined {
  return subjectValues.find((v) => v.startsWith(`${prefix}:`))?.slice(prefix.length + 1);
}

/**
 * The SHA-256 fingerprint of DER bytes as lower-case colon-separated hex, as OCI's keyId wants it.
 *
 * @example
 * ```ts
 * const leaf = parseCertificate(await Deno.readTextFile("cert.pem"), "instance certificate");
 * await fingerprint(leaf.der); // "a1:b2:…"
 * ```
 */
export async function fingerprint(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>),
  );
  return digest.toHex().replace(/(..)(?!$)/g, "$1:");
}

const RSA_ALGORITHM_ID = encode(
  0x30,
  encode(0x06, new Uint8Array([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01])),
  encode(0x05),
);
const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";

/** An RSA private key ready for signing, with its modulus to match it to a certificate. */
export interface PrivateKey {
  key: CryptoKey;
  modulus: Uint8Array;
}

const integer = (e: Element) => e.body[0] === 0 ? e.body.subarray(1) : e.body;

/**
 * Imports a PEM RSA private key (PKCS#1 `RSA PRIVATE KEY`, as IMDS serves it, or PKCS#8) for
 * RSASSA-PKCS1-v1_5 with SHA-256.
 *
 * @example
 * ```ts
 * const pem = await Deno.readTextFile("key.pem");
 * const { key } = await importPrivateKey(pem, "instance private key");
 * ```
 */
export async function importPrivateKey(pem: string, what: string): Promise<PrivateKey> {
  const { label, der } = pemToDer(pem, ["RSA PRIVATE KEY", "PRIVATE KEY"], what);
  let pkcs8: Uint8Array, pkcs1: Element;
  try {
    if (label === "RSA PRIVATE KEY") {
      pkcs1 = readElement(der);
      pkcs8 = encode(
        0x30,
        encode(0x02, new Uint8Array([0])),
        RSA_ALGORITHM_ID,
        encode(0x04, pkcs1.raw),
      );
    } else {
      pkcs8 = der;
      const [, algorithm, octets] = children(readElement(der));
      if (oid(children(algorithm)[0].body) !== RSA_ENCRYPTION) throw new DerError("not an RSA key");
      pkcs1 = readElement(octets.body);
    }
    const modulus = integer(children(pkcs1)[1]);
    const key = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8 as Uint8Array<ArrayBuffer>,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return { key, modulus };
  } catch (e) {
    throw identityError(what, `is not a valid RSA private key (${(e as Error).message})`);
  }
}

/**
 * The RSA modulus inside a SubjectPublicKeyInfo.
 *
 * @example
 * ```ts
 * const leaf = parseCertificate(await Deno.readTextFile("cert.pem"), "instance certificate");
 * rsaModulus(leaf.spki).length; // 256 for RSA-2048
 * ```
 */
export function rsaModulus(spki: Uint8Array): Uint8Array {
  const [algorithm, bits] = children(readElement(spki));
  if (oid(children(algorithm)[0].body) !== RSA_ENCRYPTION) {
    throw new DerError("not an RSA public key");
  }
  // A BIT STRING's first content byte counts unused bits; an RSA key has none.
  return integer(children(readElement(bits.body.subarray(1)))[0]);
}

/**
 * Checks that a private key belongs to a certificate by comparing RSA moduli.
 *
 * @example
 * ```ts
 * const leaf = parseCertificate(await Deno.readTextFile("cert.pem"), "instance certificate");
 * const key = await importPrivateKey(await Deno.readTextFile("key.pem"), "instance private key");
 * assertKeyMatches(leaf, key); // throws PluginError("identity") on a mismatch
 * ```
 */
export function assertKeyMatches(certificate: Certificate, key: PrivateKey): void {
  let modulus: Uint8Array;
  try {
    modulus = rsaModulus(certificate.spki);
  } catch (e) {
    throw identityError(
      "instance certificate",
      `has an unusable public key (${(e as Error).message})`,
    );
  }
  if (modulus.length !== key.modulus.length || modulus.some((b, i) => b !== key.modulus[i])) {
    throw identityError(
      "instance private key",
      "does not match the instance certificate (IMDS served a mismatched pair, maybe mid-rotation)",
    );
  }
}
