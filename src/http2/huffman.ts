/**
 * HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only: the proxy
 * sends its header strings raw, but clients and etcd compress theirs.
 *
 * The code is canonical (codes of one length are consecutive, in symbol
 * order, and shorter codes come first), so the table is just each symbol's
 * code length, and decoding needs per-length bounds instead of a tree.
 */

/** Code lengths of symbols 0..255 and EOS (256), as letters: "a" is 5 bits, "z" is 30. */
const LENGTHS =
  "isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhf" +
  "ibccccccccccccccccccccccdcdioijbkabababbbaccbbbabcbaabccccckgjix" +
  "prpprrrsrssssststtrstssssqrsrsstrqprrssqsrrtqrssqqrqsrssprrrsrrs" +
  "vvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwv" +
  "z";

const EOS = 256;
const MAX_BITS = 30;

/** For each length: the first code of that length, how many codes have it, and where its symbols start. */
const firstCode = new Int32Array(MAX_BITS + 1);
const countOf = new Int32Array(MAX_BITS + 1);
const offsetOf = new Int32Array(MAX_BITS + 1);
/** Symbols sorted by (length, symbol): the canonical order. */
const symbols = new Int16Array(257);

(() => {
  const lengthOf = (s: number) => LENGTHS.charCodeAt(s) - 97 + 5;
  for (let s = 0; s <= EOS; s++) countOf[lengthOf(s)]!++;
  let code = 0;
  let offset = 0;
  for (let len = 1; len <= MAX_BITS; len++) {
    firstCode[len] = code;
    offsetOf[len] = offset;
    offset += countOf[len]!;
    code = (code + countOf[len]!) << 1;
  }
  const next = Int32Array.from(offsetOf);
  for (let s = 0; s <= EOS; s++) symbols[next[lengthOf(s)]!++] = s;
})();

export class HuffmanError extends Error {}

/** Decodes a Huffman-coded string (as latin1, byte for byte). */
export function decodeHuffman(input: Uint8Array, start: number, end: number): string {
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const index = code - firstCode[len]!;
      if (index >= 0 && index < countOf[len]!) {
        const symbol = symbols[offsetOf[len]! + index]!;
        if (symbol === EOS) throw new HuffmanError("EOS in a Huffman-coded string");
        out.push(symbol);
        code = 0;
        len = 0;
      } else if (len >= MAX_BITS) {
        throw new HuffmanError("invalid Huffman code");
      }
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (len > 7 || code !== (1 << len) - 1) throw new HuffmanError("invalid Huffman padding");
  return Buffer.from(out).toString("latin1");
}
