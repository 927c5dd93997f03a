/** Unit ids as receptor makes them: 8 characters of [0-9a-zA-Z]. */
const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const UNIT_ID_PATTERN = /^[0-9a-zA-Z]{8}$/;
/** Mesh and node ids: what fits in a URL path segment and a log line without escaping. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function newUnitId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  // 256 % 62 leaves a small bias toward the first 8 symbols; rejection sampling removes it.
  let id = "";
  for (let i = 0; id.length < 8; i++) {
    const b = i < bytes.length ? bytes[i]! : crypto.getRandomValues(new Uint8Array(1))[0]!;
    if (b < 248) id += ALPHABET[b % 62];
  }
  return id;
}
