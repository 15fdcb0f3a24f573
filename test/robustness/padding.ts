/**
 * Values padded to a length on the wire (--value-bytes), so that reads of
 * many keys are large answers, which the proxy relays as they arrive; the
 * model and the checkers see them bare, so that checking costs what it
 * costs for short values. A padded value says its own length and its
 * filler is made from its bare value: a byte lost, added, changed or taken
 * from another value makes it read back as a value nobody wrote.
 */

const MARK = "~";

/** `~<bytes>~<bare>~<filler>`: the length first, so no cut can leave a value that looks unpadded. */
export function padValue(bare: string, bytes: number): string {
  const head = `${MARK}${bytes}${MARK}${bare}${MARK}`;
  if (bytes <= head.length) return bare;
  return head + filler(bare, bytes - head.length);
}

export function unpadValue(value: string): string {
  if (!value.startsWith(MARK)) return value;
  const lengthEnd = value.indexOf(MARK, 1);
  const bareEnd = lengthEnd < 0 ? -1 : value.indexOf(MARK, lengthEnd + 1);
  const bytes = Number(value.slice(1, lengthEnd));
  const bare = value.slice(lengthEnd + 1, bareEnd);
  const intact =
    bareEnd > 0 && Buffer.byteLength(value) === bytes && value.slice(bareEnd + 1) === filler(bare, bytes - bareEnd - 1);
  return intact ? bare : `damaged padding (${Buffer.byteLength(value)} bytes): ${value.slice(0, 40)}`;
}

function filler(bare: string, length: number): string {
  return `${bare}.`.repeat(Math.ceil(length / (bare.length + 1))).slice(0, length);
}
