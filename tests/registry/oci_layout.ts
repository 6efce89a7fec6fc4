/**
 * Writes a minimal one-layer image as an OCI image layout directory (what `skopeo copy oci:DIR:TAG`
 * reads): `oci-layout`, `index.json` naming the tag, and the manifest, config and gzip layer
 * blobs. Everything is built here, so the test knows every digest before pushing.
 */

/** What was written. */
export interface OciImage {
  /** The layout directory. */
  dir: string;
  /** The tag (`org.opencontainers.image.ref.name`). */
  tag: string;
  /** `sha256:<hex>` of the manifest: the digest a registry serves the image under. */
  manifestDigest: string;
  configDigest: string;
  /** Digest of the compressed layer (the blob). */
  layerDigest: string;
  /** Digest of the uncompressed tar (the config's `rootfs.diff_ids`). */
  diffId: string;
}

/** Files of the layer: path → content. */
export type Files = Record<string, string>;

const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const CONFIG = "application/vnd.oci.image.config.v1+json";
const LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";

/** Writes the layout to `dir` (created if needed) and returns its digests. */
export async function writeOciLayout(dir: string, tag: string, files: Files): Promise<OciImage> {
  await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
  const blob = async (bytes: Uint8Array<ArrayBuffer>) => {
    const digest = await sha256(bytes);
    await Deno.writeFile(`${dir}/blobs/sha256/${digest.slice("sha256:".length)}`, bytes);
    return { digest, size: bytes.length };
  };
  const tar = tarball(files);
  const layer = await blob(await gzip(tar));
  const diffId = await sha256(tar);
  const config = await blob(encode({
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: [diffId] },
  }));
  const manifest = await blob(encode({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: CONFIG, ...config },
    layers: [{ mediaType: LAYER, ...layer }],
  }));
  await Deno.writeFile(`${dir}/oci-layout`, encode({ imageLayoutVersion: "1.0.0" }));
  await Deno.writeFile(
    `${dir}/index.json`,
    encode({
      schemaVersion: 2,
      manifests: [{
        mediaType: MANIFEST,
        ...manifest,
        annotations: { "org.opencontainers.image.ref.name": tag },
      }],
    }),
  );
  return {
    dir,
    tag,
    manifestDigest: manifest.digest,
    configDigest: config.digest,
    layerDigest: layer.digest,
    diffId,
  };
}

/** `sha256:<hex>` of bytes. */
export async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function encode(value: unknown): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** gzip with no file name and a zero mtime (like `gzip -n`), so equal input gives equal blobs. */
async function gzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  const out = new Uint8Array(await new Response(stream).arrayBuffer());
  // CompressionStream writes neither a name nor a time today; make sure, since digests depend on it.
  if (out[3] !== 0 || out.subarray(4, 8).some((b) => b !== 0)) {
    throw new Error("gzip header carries a name or a time");
  }
  return out;
}

/**
 * A POSIX ustar archive of regular files (mode 0644, uid/gid 0, mtime 0): 512-byte headers,
 * contents padded to 512 bytes, two zero blocks at the end.
 */
export function tarball(files: Files): Uint8Array<ArrayBuffer> {
  const blocks: Uint8Array[] = [];
  for (const [name, text] of Object.entries(files)) {
    const content = new TextEncoder().encode(text);
    blocks.push(tarHeader(name, content.length));
    const padded = new Uint8Array(Math.ceil(content.length / 512) * 512);
    padded.set(content);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of blocks) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

function tarHeader(name: string, size: number): Uint8Array<ArrayBuffer> {
  const header = new Uint8Array(512);
  const put = (offset: number, length: number, value: string) => {
    const bytes = new TextEncoder().encode(value);
    if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
    header.set(bytes, offset);
  };
  const octal = (value: number, length: number) =>
    value.toString(8).padStart(length - 1, "0") + "\0";
  put(0, 100, name);
  put(100, 8, octal(0o644, 8));
  put(108, 8, octal(0, 8)); // uid
  put(116, 8, octal(0, 8)); // gid
  put(124, 12, octal(size, 12));
  put(136, 12, octal(0, 12)); // mtime
  put(148, 8, " ".repeat(8)); // the checksum counts its own field as spaces
  put(156, 1, "0"); // regular file
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  const sum = header.reduce((n, b) => n + b, 0);
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return header;
}
