// What an image file is and how large, from its first bytes, without decoding it: the
// upload page checks each file against the server's limits before sending it, and never
// decodes a huge image to draw a small preview. Reads JPEG (its SOF segment, after any
// EXIF or ICC data), PNG (IHDR), GIF (the logical screen), WebP (VP8, VP8L, VP8X),
// AVIF (ispe); TIFF, BMP, ICO/CUR, PNM, QOI, JPEG 2000 and HEIF/HEIC are recognised, their
// size left to the server.

const FIRST_READ = 64 * 1024;
const JPEG_MAX_READ = 4 * 1024 * 1024; // EXIF and ICC segments before the SOF: at most 64 KiB each
const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const STANDALONE = new Set([0x01, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8]);

async function bytesOf(file, start, end) {
  return new Uint8Array(await file.slice(start, Math.min(end, file.size)).arrayBuffer());
}

const ascii = (data, at, length) => String.fromCharCode(...data.subarray(at, at + length));
const u16be = (d, at) => (d[at] << 8) | d[at + 1];
const u16le = (d, at) => d[at] | (d[at + 1] << 8);
const u24le = (d, at) => d[at] | (d[at + 1] << 8) | (d[at + 2] << 16);
const u32be = (d, at) => ((d[at] << 24) >>> 0) + ((d[at + 1] << 16) | (d[at + 2] << 8) | d[at + 3]);

function sniff(d) {
  if (d.length >= 3 && d[0] === 0xff && d[1] === 0xd8 && d[2] === 0xff) { return "jpeg"; }
  if (d.length >= 8 && ascii(d, 0, 8) === "\x89PNG\r\n\x1a\n") { return "png"; }
  if (d.length >= 6 && (ascii(d, 0, 6) === "GIF87a" || ascii(d, 0, 6) === "GIF89a")) { return "gif"; }
  if (d.length >= 12 && ascii(d, 0, 4) === "RIFF" && ascii(d, 8, 4) === "WEBP") { return "webp"; }
  // Classic and BigTIFF, both byte orders.
  if (d.length >= 4 && ["II*\0", "MM\0*", "II+\0", "MM\0+"].includes(ascii(d, 0, 4))) { return "tiff"; }
  if (isAvif(d)) { return "avif"; }
  return extended(d);
}

/** The input-only formats the server decodes with Pillow (as it sniffs); sizes are
 * left to the server. */
function extended(d) {
  if (d.length >= 18 && ascii(d, 0, 2) === "BM") { return "bmp"; }
  if (d.length >= 6 && d[0] === 0 && d[1] === 0 && (d[2] === 1 || d[2] === 2) && d[3] === 0
      && (d[4] || d[5])) { return "ico"; }
  if (d.length >= 3 && /^(P[1-6]|Pf)\s$/.test(ascii(d, 0, 3))) { return "pnm"; }
  if (d.length >= 4 && ascii(d, 0, 4) === "qoif") { return "qoi"; }
  if (d.length >= 12 && ascii(d, 0, 12) === "\0\0\0\x0cjP  \r\n\x87\n") { return "jp2"; }
  if (d.length >= 4 && d[0] === 0xff && d[1] === 0x4f && d[2] === 0xff && d[3] === 0x51) { return "jp2"; }
  if (ftypBrands(d).some((brand) => HEIF_BRANDS.has(brand))) { return "heif"; }
  return null;
}

// HEVC stills and sequences, and the generic brands an AVIF brand (checked first) claims.
const HEIF_BRANDS = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"]);

/** An ISO-BMFF ftyp box whose major or a compatible brand is AVIF (as the server sniffs). */
function isAvif(d) {
  return ftypBrands(d).some((brand) => brand === "avif" || brand === "avis");
}

/** The major and compatible brands of an ISO-BMFF ftyp box (none without one). */
function ftypBrands(d) {
  if (d.length < 12 || ascii(d, 4, 4) !== "ftyp") { return []; }
  const end = Math.min(u32be(d, 0), d.length);
  const brands = [ascii(d, 8, 4)];
  for (let at = 16; at + 4 <= end; at += 4) { brands.push(ascii(d, at, 4)); }
  return brands;
}

function png(d) {
  if (d.length < 24 || ascii(d, 12, 4) !== "IHDR") { return null; }
  return { width: u32be(d, 16), height: u32be(d, 20) };
}

function gif(d) {
  return d.length < 10 ? null : { width: u16le(d, 6), height: u16le(d, 8) };
}

function webp(d) {
  const chunk = d.length >= 16 ? ascii(d, 12, 4) : "";
  if (chunk === "VP8 " && d.length >= 30 && d[23] === 0x9d && d[24] === 0x01 && d[25] === 0x2a) {
    return { width: u16le(d, 26) & 0x3fff, height: u16le(d, 28) & 0x3fff };
  }
  if (chunk === "VP8L" && d.length >= 25 && d[20] === 0x2f) {
    const width = 1 + (d[21] | ((d[22] & 0x3f) << 8));
    const height = 1 + ((d[22] >> 6) | (d[23] << 2) | ((d[24] & 0x0f) << 10));
    return { width, height };
  }
  if (chunk === "VP8X" && d.length >= 30) {
    return { width: 1 + u24le(d, 24), height: 1 + u24le(d, 27) };
  }
  return null;
}

/** An AVIF's size from its `ispe` (image spatial extents) boxes: the largest one. */
function avif(d) {
  let size = null;
  for (let at = 4; at + 16 <= d.length; at += 1) {
    if (d[at] === 0x69 && ascii(d, at, 4) === "ispe") {
      const width = u32be(d, at + 8);
      const height = u32be(d, at + 12);
      if (!size || width * height > size.width * size.height) { size = { width, height }; }
    }
  }
  return size;
}

/** A JPEG's size from its first SOF segment, reading further into the file as needed. */
async function jpeg(file, first) {
  let data = first;
  let at = 2;
  while (at < file.size) {
    if (at + 9 > data.length) {
      if (data.length >= Math.min(file.size, JPEG_MAX_READ)) { return null; }
      data = await bytesOf(file, 0, Math.min(JPEG_MAX_READ, Math.max(data.length * 4, at + 64 * 1024)));
      if (at + 9 > data.length) { return null; }
    }
    if (data[at] !== 0xff) { return null; }
    const marker = data[at + 1];
    if (marker === 0xff) { at += 1; continue; } // fill byte
    if (SOF_MARKERS.has(marker)) { return { height: u16be(data, at + 5), width: u16be(data, at + 7) }; }
    if (marker === 0xd9 || marker === 0xda) { return null; } // end, or scan data before any SOF
    at += STANDALONE.has(marker) ? 2 : 2 + u16be(data, at + 2);
  }
  return null;
}

/**
 * {format, width, height} of an image file; format null when it is no image type the
 * service takes; width and height null when the header does not say (or is cut short).
 */
export async function readHeader(file) {
  const first = await bytesOf(file, 0, FIRST_READ);
  const format = sniff(first);
  let size = null;
  if (format === "png") { size = png(first); }
  if (format === "gif") { size = gif(first); }
  if (format === "webp") { size = webp(first); }
  if (format === "avif") { size = avif(first); }
  if (format === "jpeg") { size = await jpeg(file, first); }
  return { format, width: size ? size.width : null, height: size ? size.height : null };
}
