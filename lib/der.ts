/**
 * Just enough ASN.1 DER to read X.509 certificates and RSA keys and to wrap a PKCS#1 key as
 * PKCS#8 for WebCrypto. Reading is strict about lengths, so truncated or corrupt input fails with
 * an error instead of reading past its end.
 *
 * @module
 */

/** One DER element. */
export interface Element {
  tag: number;
  /** The content octets. */
  body: Uint8Array;
  /** The whole element, header included. */
  raw: Uint8Array;
}

/**
 * Thrown on anything that is not well-formed DER.
 *
 * @example
 * ```ts
 * try {
 *   readElement(new Uint8Array([0x30]));
 * } catch (e) {
 *   e instanceof DerError; // true: "truncated element header"
 * }
 * ```
 */
export class DerError extends Error {
  override name = "DerError";
}

/**
 * Reads the element that starts at `offset`.
 *
 * @example
 * ```ts
 * readElement(new Uint8Array([0x02, 0x01, 0x05])).body; // Uint8Array [5]
 * ```
 */
export function readElement(bytes: Uint8Array, offset = 0): Element {
  if (offset + 2 > bytes.length) throw new DerError("truncated element header");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not used by X.509");
  let length = bytes[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new DerError("unsupported length encoding");
    if (start + count > bytes.length) throw new DerError("truncated length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    start += count;
  }
  const end = start + length;
  if (end > bytes.length) throw new DerError("element runs past the end of its input");
  return { tag, body: bytes.subarray(start, end), raw: bytes.subarray(offset, end) };
}

/**
 * Reads the elements inside a constructed element (a SEQUENCE or SET).
 *
 * @example
 * ```ts
 * children(readElement(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x05]))).length; // 1
 * ```
 */
export function children(element: Element): Element[] {
  const out: Element[] = [];
  for (let at = 0; at < element.body.length;) {
    const child = readElement(element.body, at);
    out.push(child);
    at += child.raw.length;
  }
  return out;
}

/**
 * Encodes one element from its tag and content.
 *
 * @example
 * ```ts
 * encode(0x05, new Uint8Array()); // Uint8Array [5, 0] (NULL)
 * ```
 */
export function encode(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const lengthBytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) lengthBytes.unshift(n % 256);
  const header = length < 0x80 ? [tag, length] : [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let at = header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Decodes an OBJECT IDENTIFIER's content to dotted form.
 *
 * @example
 * ```ts
 * oid(new Uint8Array([0x55, 0x04, 0x0b])); // "2.5.4.11"
 * ```
 */
export function oid(body: Uint8Array): string {
  const parts = [Math.floor(body[0] / 40), body[0] % 40];
  let value = 0;
  for (const byte of body.subarray(1)) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join(".");
}
