/**
 * The instance's identity, checked: the leaf certificate parsed once, its tenancy and
 * fingerprint, its private key imported and proven to belong to it, the intermediate, the region.
 *
 * @module
 */

import { PluginError } from "./errors.ts";
import type { InstanceDocuments } from "./imds.ts";
import type { Region } from "./regions.ts";
import {
  assertKeyMatches,
  type Certificate,
  fingerprint,
  importPrivateKey,
  parseCertificate,
  subjectValue,
  tenancyOf,
} from "./x509.ts";

/** Who the instance is, as the auth service will see it. */
export interface InstanceIdentity {
  leaf: Certificate;
  intermediate: Certificate;
  /** The leaf's SHA-256 fingerprint, lower-case colon hex. */
  fingerprint: string;
  tenancy: string;
  compartment?: string;
  instance?: string;
  privateKey: CryptoKey;
  region: Region;
}

/**
 * Parses and checks the documents IMDS served.
 *
 * @example
 * ```ts
 * import type { InstanceDocuments } from "./imds.ts";
 *
 * declare const docs: InstanceDocuments; // from fetchInstanceDocuments()
 * const identity = await instanceIdentity(docs);
 * identity.tenancy; // "ocid1.tenancy.oc1..…"
 * ```
 */
export async function instanceIdentity(
  docs: Omit<InstanceDocuments, "baseUrl">,
  now = new Date(),
): Promise<InstanceIdentity> {
  const leaf = parseCertificate(docs.certificatePem, "instance certificate");
  const intermediate = parseCertificate(docs.intermediatePem, "intermediate certificate");
  const tenancy = tenancyOf(leaf.subjectValues);
  if (now > leaf.notAfter || now < leaf.notBefore) {
    throw new PluginError(
      "identity",
      "IDENTITY",
      `instance certificate is valid from ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}, not now (${now.toISOString()})`,
      { hint: "check the node's clock (chrony); IMDS rotates the certificate before it expires" },
    );
  }
  const [key, fp] = await Promise.all([
    importPrivateKey(docs.privateKeyPem, "instance private key"),
    fingerprint(leaf.der),
  ]);
  assertKeyMatches(leaf, key);
  return {
    leaf,
    intermediate,
    fingerprint: fp,
    tenancy,
    compartment: subjectValue(leaf.subjectValues, "opc-compartment"),
    instance: subjectValue(leaf.subjectValues, "opc-instance"),
    privateKey: key.key,
    region: docs.region,
  };
}
