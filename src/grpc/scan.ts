/**
 * Reads single fields of encoded protobuf messages without decoding them
 * whole: a keep-alive's lease ID, a cached answer's header revision. Throws
 * on bytes that are not a well-formed message (groups, which etcd's
 * messages never use, included).
 */

/** The last value of int64 field `field` (protobuf keeps the last one); 0 when absent. */
export function int64Field(message: Uint8Array, field: number): bigint {
  let found = false;
  let lo = 0;
  let hi = 0;
  position = 0;
  while (nextField(message)) {
    if (fieldNumber === field && wireType === WIRE_VARINT) {
      readVarint(message);
      found = true;
      lo = varintLo;
      hi = varintHi;
    } else skip(message);
  }
  return found ? BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)) : 0n;
}

/** The last value of length-delimited field `field` (an embedded message, bytes); undefined when absent. */
export function bytesField(message: Uint8Array, field: number): Uint8Array | undefined {
  let value: Uint8Array | undefined;
  position = 0;
  while (nextField(message)) {
    if (fieldNumber === field && wireType === WIRE_LENGTH) {
      const start = lengthDelimited(message);
      value = message.subarray(start, position);
    } else skip(message);
  }
  return value;
}

/**
 * The first value of length-delimited field `field`, found without looking
 * past it: for the start of a message whose rest has not arrived.
 */
export function firstBytesField(message: Uint8Array, field: number): Uint8Array | undefined {
  position = 0;
  while (nextField(message)) {
    if (fieldNumber === field && wireType === WIRE_LENGTH) {
      const start = lengthDelimited(message);
      return message.subarray(start, position);
    }
    skip(message);
  }
  return undefined;
}

/** Protobuf's wire types (the low three bits of a field's tag). */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH = 2;
export const WIRE_FIXED32 = 5;

// The reader's state. Scanning is synchronous, so one set serves every call,
// and reading a field costs no allocation.
let position = 0;
let fieldNumber = 0;
let wireType = 0;
let varintLo = 0;
let varintHi = 0;

/** Reads the next field's tag into fieldNumber and wireType; false at the end of the message. */
function nextField(message: Uint8Array): boolean {
  if (position >= message.length) return false;
  readVarint(message);
  wireType = varintLo & 7;
  fieldNumber = (varintLo >>> 3) | (varintHi << 29);
  if (fieldNumber === 0) throw new Error("illegal field number 0");
  return true;
}

/** Skips the value of the field just read. */
function skip(message: Uint8Array): void {
  switch (wireType) {
    case WIRE_VARINT:
      readVarint(message);
      return;
    case WIRE_FIXED64:
      position += 8;
      break;
    case WIRE_LENGTH:
      lengthDelimited(message);
      return;
    case WIRE_FIXED32:
      position += 4;
      break;
    default:
      throw new Error(`unsupported wire type ${wireType}`);
  }
  if (position > message.length) throw new Error("premature EOF");
}

/** Moves past a length-delimited value; returns where it starts. */
function lengthDelimited(message: Uint8Array): number {
  readVarint(message);
  const start = position;
  position += varintLo;
  if (varintHi !== 0 || position > message.length) throw new Error("premature EOF");
  return start;
}
/** Reads the varint at `position` into varintLo and varintHi (its low and high 32 bits). */
function readVarint(bytes: Uint8Array): void {
  let lo = 0;
  let hi = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    const b = bytes[position++];
    if (b === undefined) throw new Error("premature EOF");
    const bits = b & 0x7f;
    if (shift < 28) lo |= bits << shift;
    else if (shift === 28) {
      lo |= bits << 28;
      hi |= bits >>> 4;
    } else hi |= bits << (shift - 32);
    if (b < 0x80) {
      varintLo = lo >>> 0;
      varintHi = hi >>> 0;
      return;
    }
  }
  throw new Error("varint longer than 10 bytes");
}

/**
 * bytesField over a message held in pieces (a gathered request), starting
 * `from` bytes into the first, without joining them: the value found is
 * copied only when it spans pieces.
 */
export function bytesFieldOfPieces(pieces: readonly Uint8Array[], from: number, field: number): Uint8Array | undefined {
  const cursor = new PieceCursor(pieces, from);
  let value: Uint8Array | undefined;
  while (!cursor.atEnd()) {
    const tag = cursor.varint();
    const number = Math.floor(tag / 8);
    if (number === 0) throw new Error("illegal field number 0");
    switch (tag % 8) {
      case WIRE_VARINT:
        cursor.varint();
        break;
      case WIRE_FIXED64:
        cursor.skip(8);
        break;
      case WIRE_LENGTH: {
        const length = cursor.varint();
        if (number === field) value = cursor.take(length);
        else cursor.skip(length);
        break;
      }
      case WIRE_FIXED32:
        cursor.skip(4);
        break;
      default:
        throw new Error(`unsupported wire type ${tag % 8}`);
    }
  }
  return value;
}

/** A reading position in bytes held as consecutive pieces. */
class PieceCursor {
  private piece = 0;

  constructor(
    private readonly pieces: readonly Uint8Array[],
    private offset: number,
  ) {}

  atEnd(): boolean {
    while (this.piece < this.pieces.length && this.offset >= this.pieces[this.piece]!.length) {
      this.offset -= this.pieces[this.piece]!.length;
      this.piece++;
    }
    return this.piece >= this.pieces.length;
  }

  /** A varint's value as a number: exact up to 2^53, which is more than any tag or length here. */
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.atEnd()) throw new Error("premature EOF");
      const b = this.pieces[this.piece]![this.offset++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw new Error("varint longer than 10 bytes");
  }

  skip(n: number): void {
    this.offset += n;
    if (n > 0 && this.atEnd() && this.offset > 0) throw new Error("premature EOF");
  }

  /** The next `n` bytes: a view when they lie in one piece, else a copy. */
  take(n: number): Uint8Array {
    if (n === 0 || this.atEnd()) {
      if (n > 0) throw new Error("premature EOF");
      return new Uint8Array(0);
    }
    const current = this.pieces[this.piece]!;
    if (this.offset + n <= current.length) {
      const view = current.subarray(this.offset, this.offset + n);
      this.offset += n;
      return view;
    }
    const out = new Uint8Array(n);
    for (let filled = 0; filled < n;) {
      if (this.atEnd()) throw new Error("premature EOF");
      const source = this.pieces[this.piece]!;
      const count = Math.min(n - filled, source.length - this.offset);
      out.set(source.subarray(this.offset, this.offset + count), filled);
      filled += count;
      this.offset += count;
    }
    return out;
  }
}
