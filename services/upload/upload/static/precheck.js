// Each chosen file checked before it is sent, against the limits the server publishes
// (GET /api/v1/about: image_max_bytes, image_max_pixels, image_max_side): empty, too
// large, too many pixels, too wide or tall (from the header: imagehead.js), or no image
// type the service takes. The server checks all of it again; this only saves sending a
// file bound to be refused, and says why next to the file, once, in plain numbers.

import { bytes } from "./format.js";
import { readHeader } from "./imagehead.js";

export const PREVIEW_MAX_PIXELS = 40_000_000;
/** Past this, no preview: decoding a huge image to draw 52 px of it stalls the page. */

const NUMBER = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const MEGA = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const TYPES = "JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP, ICO/CUR, PNM, QOI, JPEG 2000, HEIF/HEIC";

/** 400 000 000 → "400 MP"; small counts as pixels. */
export function megapixels(count) {
  return count >= 100_000 ? `${MEGA.format(count / 1e6)} MP` : `${NUMBER.format(count)} pixels`;
}

/** Sizes that would read the same ("25 MiB; at most 25 MiB") are given in bytes. */
function sizes(size, limit) {
  return bytes(size) === bytes(limit)
    ? [`${NUMBER.format(size)} bytes`, `${NUMBER.format(limit)} bytes`]
    : [bytes(size), bytes(limit)];
}

const problem = (code, headline, detail) => ({ code, headline, detail });

/**
 * What is wrong with `file` under `limits` ({image_max_bytes, image_max_pixels,
 * image_max_side}, any missing), or null; and its header ({format, width, height}).
 */
export async function checkFile(file, limits = {}) {
  if (file.size === 0) {
    return { problem: problem("empty", "The file is empty", null), header: null };
  }
  const maxBytes = limits.image_max_bytes;
  if (maxBytes && file.size > maxBytes) {
    const [size, limit] = sizes(file.size, maxBytes);
    return { problem: problem("too_large", "Too large", `${size}; at most ${limit}`), header: null };
  }
  const header = await readHeader(file);
  return { problem: headerProblem(header, limits), header };
}

function headerProblem(header, limits) {
  if (header.format === null) {
    return problem("unsupported_type", "Not an image type we accept", `the file's content is none of ${TYPES}`);
  }
  const { width, height } = header;
  if (!width || !height) { return null; } // the server reads what the browser cannot
  const maxSide = limits.image_max_side;
  if (maxSide && Math.max(width, height) > maxSide) {
    return problem("too_large_side", "Too wide or too tall",
      `${NUMBER.format(width)} \u00d7 ${NUMBER.format(height)} pixels; each side at most ${NUMBER.format(maxSide)}`);
  }
  const maxPixels = limits.image_max_pixels;
  if (maxPixels && width * height > maxPixels) {
    return problem("too_many_pixels", "Too many pixels",
      `${megapixels(width * height)}; at most ${megapixels(maxPixels)}`);
  }
  return null;
}

/** Whether the browser may decode the image for a preview (its header says it is small). */
export function previewable(header) {
  if (!header || !["jpeg", "png", "gif", "webp", "avif"].includes(header.format)) { return false; }
  // Unknown size (AVIF, a header cut short): no preview rather than a gamble.
  return Boolean(header.width && header.height) && header.width * header.height <= PREVIEW_MAX_PIXELS;
}
