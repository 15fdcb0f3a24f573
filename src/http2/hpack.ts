/**
 * HPACK header compression (RFC 7541) for the proxy's own HTTP/2 server.
 *
 * Decoding is complete: clients index their headers in the dynamic table and
 * Huffman-code strings. Encoding is deliberately simple: every field is a
 * literal that is never added to the peer's dynamic table, with the static
 * table's name (or whole field) when it has one. The proxy's own responses
 * use a handful of constant header blocks, so they are encoded once.
 */
import { fieldCharsOk, type FieldRules } from "./header-rules.js";
import { decodeHuffman } from "./huffman.js";

export class CompressionError extends Error {}

/** A decoded header list: lower-case names, repeated names joined with ", " (cookies with "; "). */
export type HeaderList = Record<string, string>;

/** RFC 7541 Appendix A. */
const STATIC_TABLE: ReadonlyArray<readonly [string, string, boolean]> = (
  [
    [":authority", ""],
    [":method", "GET"],
    [":method", "POST"],
    [":path", "/"],
    [":path", "/index.html"],
    [":scheme", "http"],
    [":scheme", "https"],
    [":status", "200"],
    [":status", "204"],
    [":status", "206"],
    [":status", "304"],
    [":status", "400"],
    [":status", "404"],
    [":status", "500"],
    ["accept-charset", ""],
    ["accept-encoding", "gzip, deflate"],
    ["accept-language", ""],
    ["accept-ranges", ""],
    ["accept", ""],
    ["access-control-allow-origin", ""],
    ["age", ""],
    ["allow", ""],
    ["authorization", ""],
    ["cache-control", ""],
    ["content-disposition", ""],
    ["content-encoding", ""],
    ["content-language", ""],
    ["content-length", ""],
    ["content-location", ""],
    ["content-range", ""],
    ["content-type", ""],
    ["cookie", ""],
    ["date", ""],
    ["etag", ""],
    ["expect", ""],
    ["expires", ""],
    ["from", ""],
    ["host", ""],
    ["if-match", ""],
    ["if-modified-since", ""],
    ["if-none-match", ""],
    ["if-range", ""],
    ["if-unmodified-since", ""],
    ["last-modified", ""],
    ["link", ""],
    ["location", ""],
    ["max-forwards", ""],
    ["proxy-authenticate", ""],
    ["proxy-authorization", ""],
    ["range", ""],
    ["referer", ""],
    ["refresh", ""],
    ["retry-after", ""],
    ["server", ""],
    ["set-cookie", ""],
    ["strict-transport-security", ""],
    ["transfer-encoding", ""],
    ["user-agent", ""],
    ["vary", ""],
    ["via", ""],
    ["www-authenticate", ""],
  ] satisfies Array<[string, string]>
).map(([name, value]) => [name, value, true] as const);

/** Every entry costs its name and value lengths plus 32 (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

/**
 * Huffman-coded strings a decoder remembers, by their bytes. A peer built on
 * nghttp2 (grpc-go's and node's clients) never indexes `:path`, so every
 * call sends its method's path again, Huffman-coded, byte for byte the same.
 */
const HUFFMAN_MEMO_SLOTS = 64;
const EMPTY_BLOCK = new Uint8Array(0);
const HUFFMAN_MEMO_MAX_BYTES = 128;

/** One connection's decoder: its dynamic table lives as long as the connection. */
export class HpackDecoder {
  /** Newest entry last; each knows whether its characters are allowed in a request (see fieldCharsOk). */
  private readonly dynamic: Array<readonly [string, string, boolean]> = [];
  private size = 0;
  private maxSize: number;
  /** The block being decoded, and where in it. */
  private block: Uint8Array = EMPTY_BLOCK;
  private pos = 0;
  private readonly memoBytes: Array<Uint8Array | undefined> = new Array(HUFFMAN_MEMO_SLOTS);
  private readonly memoValues: string[] = new Array(HUFFMAN_MEMO_SLOTS);
  /** The block being decoded: its fields so far, their RFC 7541 size, and the rules they are held to. */
  private headers: HeaderList = {};
  private listSize = 0;
  private rules: FieldRules | undefined;
  /** The last decoded block was larger than `maxListSize`: its fields were decoded but not kept. */
  oversized = false;

  /**
   * `limit` is the SETTINGS_HEADER_TABLE_SIZE this side announced; the peer
   * may shrink below it. `maxListSize` bounds a decoded block (name, value
   * and 32 octets a field, as SETTINGS_MAX_HEADER_LIST_SIZE counts): a
   * few bytes of indexed references can stand for megabytes of fields.
   */
  constructor(
    private readonly limit: number,
    private readonly maxListSize = Infinity,
  ) {
    this.maxSize = limit;
  }

  /**
   * Decodes one complete header block; throws CompressionError (a
   * connection error) on bad input. A block over `maxListSize` is still
   * decoded to the end, to keep the dynamic table in step with the peer's,
   * but comes back empty with `oversized` set. `rules` see every field.
   */
  decode(block: Uint8Array, rules?: FieldRules): HeaderList {
    const headers: HeaderList = {};
    this.headers = headers;
    this.listSize = 0;
    this.oversized = false;
    this.rules = rules;
    this.block = block;
    this.pos = 0;
    let fieldsSeen = false;
    try {
      while (this.pos < block.length) {
        const b = block[this.pos]!;
        if (b & 0x80) {
          const [name, value, charsOk] = this.entry(this.int(7));
          this.add(name, value, charsOk);
        } else if (b & 0x40) {
          const index = this.int(6);
          const name = index === 0 ? this.str() : this.entry(index)[0];
          const value = this.str();
          this.insert(name, value);
          this.add(name, value, false);
        } else if (b & 0x20) {
          // A table size update is only allowed before the first field.
          if (fieldsSeen) throw new CompressionError("table size update after a header field");
          const size = this.int(5);
          if (size > this.limit) throw new CompressionError("table size update above the announced limit");
          this.maxSize = size;
          this.evict(0);
          continue;
        } else {
          // Literal without indexing (0000) or never indexed (0001): the same to a decoder.
          const index = this.int(4);
          const name = index === 0 ? this.str() : this.entry(index)[0];
          this.add(name, this.str(), false);
        }
        fieldsSeen = true;
      }
    } finally {
      this.block = EMPTY_BLOCK; // do not keep the peer's bytes alive
      this.headers = {};
      this.rules = undefined;
    }
    return this.oversized ? {} : headers;
  }

  /** Adds a field to the block's list; a repeated name joins its values, as HeaderList says. */
  private add(name: string, value: string, charsOk: boolean): void {
    if (this.oversized) return;
    this.listSize += name.length + value.length + ENTRY_OVERHEAD;
    if (this.listSize > this.maxListSize) {
      this.oversized = true;
      return;
    }
    this.rules?.field(name, value, charsOk);
    const headers = this.headers;
    const previous = headers[name];
    headers[name] = previous === undefined ? value : `${previous}${name === "cookie" ? "; " : ", "}${value}`;
  }

  private int(prefixBits: number): number {
    const block = this.block;
    if (this.pos >= block.length) throw new CompressionError("truncated integer");
    const max = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= block.length) throw new CompressionError("truncated integer");
      const b = block[this.pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) break;
      if (shift > 28) throw new CompressionError("integer overflow");
    }
    return value;
  }

  private str(): string {
    const block = this.block;
    if (this.pos >= block.length) throw new CompressionError("truncated string");
    const huffman = (block[this.pos]! & 0x80) !== 0;
    const length = this.int(7);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) throw new CompressionError("truncated string");
    this.pos = end;
    if (!huffman) return Buffer.from(block.buffer, block.byteOffset + start, length).toString("latin1");
    return this.huffman(block, start, end);
  }

  /** A Huffman-coded string, from the memo when these bytes were seen lately. */
  private huffman(block: Uint8Array, start: number, end: number): string {
    const length = end - start;
    let slot = -1;
    if (length <= HUFFMAN_MEMO_MAX_BYTES) {
      let hash = 0x811c9dc5; // FNV-1a
      for (let i = start; i < end; i++) hash = Math.imul(hash ^ block[i]!, 0x01000193);
      slot = (hash >>> 0) % HUFFMAN_MEMO_SLOTS;
      const known = this.memoBytes[slot];
      if (known !== undefined && known.length === length) {
        let same = true;
        for (let i = 0; i < length && same; i++) same = known[i] === block[start + i];
        if (same) return this.memoValues[slot]!;
      }
    }
    let value: string;
    try {
      value = decodeHuffman(block, start, end);
    } catch (err) {
      throw new CompressionError((err as Error).message);
    }
    if (slot >= 0) {
      this.memoBytes[slot] = Uint8Array.prototype.slice.call(block, start, end);
      this.memoValues[slot] = value;
    }
    return value;
  }

  private entry(index: number): readonly [string, string, boolean] {
    if (index === 0) throw new CompressionError("index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const dynamicIndex = index - STATIC_TABLE.length;
    if (dynamicIndex > this.dynamic.length) throw new CompressionError(`index ${index} beyond the table`);
    return this.dynamic[this.dynamic.length - dynamicIndex]!;
  }

  private insert(name: string, value: string): void {
    const cost = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(cost);
    // An entry larger than the whole table empties it and is not added.
    if (cost <= this.maxSize) {
      this.dynamic.push([name, value, fieldCharsOk(name, value)]);
      this.size += cost;
    }
  }

  /** Drops the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    while (this.dynamic.length > 0 && this.size + room > this.maxSize) {
      const [name, value] = this.dynamic.shift()!;
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
    }
  }
}

/** A header value, or several for a repeated field (set-cookie). */
export type OutgoingValue = string | number | ReadonlyArray<string>;

const staticName = new Map<string, number>();
const staticField = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!staticName.has(name)) staticName.set(name, i + 1);
  if (value !== "") staticField.set(`${name}\0${value}`, i + 1);
});

/** Encodes header fields (pseudo-headers first, as the caller orders them) into one header block. */
export function encodeHeaders(fields: Iterable<readonly [string, OutgoingValue]>): Buffer {
  const out: number[] = [];
  const int = (value: number, prefixBits: number, firstByte: number) => {
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      out.push(firstByte | value);
      return;
    }
    out.push(firstByte | max);
    value -= max;
    while (value >= 0x80) {
      out.push((value & 0x7f) | 0x80);
      value = Math.floor(value / 0x80);
    }
    out.push(value);
  };
  const str = (s: string) => {
    const bytes = Buffer.from(s, "latin1");
    int(bytes.length, 7, 0);
    for (const b of bytes) out.push(b);
  };
  for (const [rawName, raw] of fields) {
    const name = rawName.toLowerCase();
    const values = Array.isArray(raw) ? raw : [String(raw)];
    for (const value of values as string[]) {
      const whole = staticField.get(`${name}\0${value}`);
      if (whole !== undefined) {
        int(whole, 7, 0x80);
        continue;
      }
      const nameIndex = staticName.get(name);
      if (nameIndex !== undefined) {
        int(nameIndex, 4, 0x00);
      } else {
        out.push(0x00);
        str(name);
      }
      str(value);
    }
  }
  return Buffer.from(out);
}
