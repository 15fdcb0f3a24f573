/**
 * Protobuf's binary wire format straight to its JSON text, for answers a
 * JSON lane only re-encodes. Decoding a 2,000-key Range into messages, then
 * into a JSON tree, then into a string cost a quarter-second of CPU per
 * megabyte, most of it collecting that garbage; this walks etcd's bytes once
 * and writes the JSON into one buffer. The text is exactly what `JSON.stringify(toJson(schema,
 * fromBinary(schema, bytes), options))` gives (a property test holds it to
 * that); whatever this does not handle the same way (a field repeated or out
 * of order on the wire, floats, maps, groups, closed enums, invalid UTF-8,
 * anything malformed) answers `undefined`, and the caller takes that path.
 */
import {
  fromBinary,
  ScalarType,
  toBinary,
  toJsonString,
  type DescField,
  type DescMessage,
  type Message,
} from "@bufbuild/protobuf";
import { isUtf8 } from "node:buffer";
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH, WIRE_VARINT } from "./scan.js";

export interface JsonNames {
  /** etcd's gateway writes proto field names (`create_revision`), protobuf's JSON mapping their JSON names (`createRevision`). */
  useProtoFieldName: boolean;
}

/** The JSON text of `bytes`, a `schema` message, or undefined where the generic path must answer. */
export function binaryToJson(schema: DescMessage, bytes: Uint8Array, names: JsonNames): Buffer | undefined {
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Base64 is 4/3 of the bytes; keys and numbers add a little more.
  const out = new JsonOut(Math.ceil(input.length * 1.45) + 64);
  try {
    writeMessage(out, planOf(schema, names), input, 0, input.length, 0);
  } catch (err) {
    if (err === UNHANDLED) return undefined;
    throw err;
  }
  return out.done();
}

/** The JSON text of `bytes`, a `schema` message: written straight from them, or decoded where it must be. */
export function jsonOfBinary(schema: DescMessage, bytes: Uint8Array, names: JsonNames): Buffer {
  return binaryToJson(schema, bytes, names) ?? Buffer.from(toJsonString(schema, fromBinary(schema, bytes), names));
}

/**
 * The JSON text of a message the proxy holds decoded, through its binary
 * encoding: protobuf-es's toJson writes base64 a character at a time, and a
 * watch event of a megabyte took it a quarter of a second. A string the
 * encoding would change (a lone surrogate becomes U+FFFD, and a leading
 * byte order mark would not survive decoding) sends the message to toJson.
 */
export function jsonOfMessage(schema: DescMessage, message: Message, names: JsonNames): Buffer {
  return binaryToJson(schema, toBinary(schema, message), names) ?? Buffer.from(toJsonString(schema, message, names));
}

/** Thrown inside, answered as undefined: the generic path decides. */
const UNHANDLED = Symbol("unhandled");
function unhandled(): never {
  throw UNHANDLED;
}

/** U+FFFD in UTF-8. */
const REPLACEMENT = Buffer.from([0xef, 0xbf, 0xbd]);

/** protobuf-es's default recursion limit: deeper, it decides (and refuses). */
const MAX_DEPTH = 100;

const enum Kind {
  Int32,
  Uint32,
  Sint32,
  Fixed32,
  Sfixed32,
  Int64,
  Uint64,
  Sint64,
  Fixed64,
  Sfixed64,
  Bool,
  String,
  Bytes,
  Enum,
  Message,
}

interface FieldPlan {
  readonly number: number;
  /** `"name":`, ready to write. */
  readonly key: string;
  readonly kind: Kind;
  readonly list: boolean;
  /** Written even when zero: explicit presence (proto3 `optional`, oneof members). */
  readonly explicit: boolean;
  /** Index of its oneof in the message's, or -1. */
  readonly oneof: number;
  readonly enumNames?: ReadonlyMap<number, string>;
  readonly enumZero?: number;
  /** Filled after construction: message types may refer to each other. */
  message?: MessagePlan;
}

interface MessagePlan {
  /** By field number, for numbers below FIELD_TABLE; the rest in `far`. */
  readonly near: Array<FieldPlan | undefined>;
  readonly far: Map<number, FieldPlan>;
  /** False for a type this does not write (a well-known type, a map, a float): its messages take the generic path. */
  usable: boolean;
}

const FIELD_TABLE = 64;

const plans = [new WeakMap<DescMessage, MessagePlan>(), new WeakMap<DescMessage, MessagePlan>()];

function planOf(schema: DescMessage, names: JsonNames): MessagePlan {
  const cache = plans[names.useProtoFieldName ? 1 : 0]!;
  const known = cache.get(schema);
  if (known) return known;
  const near: Array<FieldPlan | undefined> = [];
  const far = new Map<number, FieldPlan>();
  const plan: MessagePlan = { near, far, usable: !schema.typeName.startsWith("google.protobuf.") };
  // Set before its fields are planned: message types may contain themselves.
  cache.set(schema, plan);
  const oneofs = schema.oneofs;
  for (const field of schema.fields) {
    const fieldPlan = planField(field, names, field.oneof ? oneofs.indexOf(field.oneof) : -1);
    if (!fieldPlan) {
      plan.usable = false;
      break;
    }
    if (field.number < FIELD_TABLE) near[field.number] = fieldPlan;
    else far.set(field.number, fieldPlan);
    if (fieldPlan.kind === Kind.Message) {
      fieldPlan.message = planOf((field as { message: DescMessage }).message, names);
    }
  }
  return plan;
}

const SCALAR_KINDS: Partial<Record<ScalarType, Kind>> = {
  [ScalarType.INT32]: Kind.Int32,
  [ScalarType.UINT32]: Kind.Uint32,
  [ScalarType.SINT32]: Kind.Sint32,
  [ScalarType.FIXED32]: Kind.Fixed32,
  [ScalarType.SFIXED32]: Kind.Sfixed32,
  [ScalarType.INT64]: Kind.Int64,
  [ScalarType.UINT64]: Kind.Uint64,
  [ScalarType.SINT64]: Kind.Sint64,
  [ScalarType.FIXED64]: Kind.Fixed64,
  [ScalarType.SFIXED64]: Kind.Sfixed64,
  [ScalarType.BOOL]: Kind.Bool,
  [ScalarType.STRING]: Kind.String,
  [ScalarType.BYTES]: Kind.Bytes,
};

function planField(field: DescField, names: JsonNames, oneof: number): FieldPlan | undefined {
  const key = `${JSON.stringify(names.useProtoFieldName ? field.name : field.jsonName)}:`;
  const base = { number: field.number, key, oneof, explicit: field.oneof !== undefined || field.presence !== IMPLICIT };
  switch (field.fieldKind) {
    case "scalar": {
      const kind = SCALAR_KINDS[field.scalar];
      return kind === undefined ? undefined : { ...base, kind, list: false };
    }
    case "enum":
      return enumPlan(field.enum, { ...base, list: false });
    case "message":
      return field.delimitedEncoding ? undefined : { ...base, kind: Kind.Message, list: false };
    case "list":
      if (field.listKind === "message")
        return field.delimitedEncoding ? undefined : { ...base, kind: Kind.Message, list: true, explicit: false };
      if (field.listKind === "enum") return enumPlan(field.enum, { ...base, list: true, explicit: false });
      {
        const kind = SCALAR_KINDS[field.scalar];
        return kind === undefined ? undefined : { ...base, kind, list: true, explicit: false };
      }
    case "map":
      return undefined;
  }
}

/** protobuf-es's FeatureSet.FieldPresence.IMPLICIT: proto3 fields without `optional`. */
const IMPLICIT = 2;

function enumPlan(
  descEnum: { open: boolean; typeName: string; values: ReadonlyArray<{ number: number; name: string }> },
  base: Omit<FieldPlan, "kind">,
): FieldPlan | undefined {
  if (!descEnum.open || descEnum.typeName === "google.protobuf.NullValue") return undefined;
  return {
    ...base,
    kind: Kind.Enum,
    enumNames: new Map(descEnum.values.map((v) => [v.number, JSON.stringify(v.name)] as const)),
    enumZero: descEnum.values[0]!.number,
  };
}

/**
 * Writes the message in bytes[start, end). Fields must come in ascending
 * order, a repeated one's elements together, as etcd and every Go encoder
 * write them; that is the order JSON lists them in, so each is written as
 * it is read, with no tree in between.
 */
function writeMessage(out: JsonOut, plan: MessagePlan, bytes: Buffer, start: number, end: number, depth: number): void {
  if (!plan.usable || depth > MAX_DEPTH) unhandled();
  out.byte(0x7b); // {
  let first = true;
  let last = 0;
  /** The repeated field whose array is open, if any. */
  let openList: FieldPlan | undefined;
  let listFirst = true;
  let oneofsSeen = 0;
  const reader = { at: start };
  while (reader.at < end) {
    const tag = readVarint32(bytes, reader, end);
    const number = tag >>> 3;
    const wireType = tag & 7;
    if (number === 0) unhandled();
    const field = number < FIELD_TABLE ? plan.near[number] : plan.far.get(number);
    if (field === undefined) {
      skip(bytes, reader, end, wireType);
      continue;
    }
    if (number < last || (number === last && !field.list)) unhandled();
    if (openList !== undefined && openList !== field) {
      out.byte(0x5d); // ]
      openList = undefined;
    }
    last = number;
    if (field.oneof >= 0) {
      // A second member of one oneof replaces the first: the generic path knows which won.
      if (field.oneof > 30 || oneofsSeen & (1 << field.oneof)) unhandled();
      oneofsSeen |= 1 << field.oneof;
    }
    if (field.list) {
      const packed = wireType === WIRE_LENGTH && isPackable(field.kind);
      let packedEnd = end;
      if (packed) {
        const length = readVarint32(bytes, reader, end);
        packedEnd = reader.at + length;
        if (packedEnd > end) unhandled();
        if (length === 0) continue; // an empty run adds nothing, and an empty list is left out
      }
      if (openList === undefined) {
        if (!first) out.byte(0x2c);
        first = false;
        out.ascii(field.key);
        out.byte(0x5b); // [
        openList = field;
        listFirst = true;
      }
      if (packed) {
        while (reader.at < packedEnd) {
          if (!listFirst) out.byte(0x2c);
          listFirst = false;
          writeValue(out, field, bytes, reader, packedEnd, wireTypeOf(field.kind), depth, true);
        }
        if (reader.at !== packedEnd) unhandled();
      } else {
        if (!listFirst) out.byte(0x2c);
        listFirst = false;
        writeValue(out, field, bytes, reader, end, wireType, depth, true);
      }
      continue;
    }
    const mark = out.at;
    if (!first) out.byte(0x2c);
    out.ascii(field.key);
    if (writeValue(out, field, bytes, reader, end, wireType, depth, field.explicit)) first = false;
    else out.at = mark; // a zero with implicit presence is left out
  }
  if (reader.at !== end) unhandled();
  if (openList !== undefined) out.byte(0x5d);
  out.byte(0x7d); // }
}

function isPackable(kind: Kind): boolean {
  return kind !== Kind.String && kind !== Kind.Bytes && kind !== Kind.Message;
}

function wireTypeOf(kind: Kind): number {
  switch (kind) {
    case Kind.Fixed32:
    case Kind.Sfixed32:
      return WIRE_FIXED32;
    case Kind.Fixed64:
    case Kind.Sfixed64:
      return WIRE_FIXED64;
    case Kind.String:
    case Kind.Bytes:
    case Kind.Message:
      return WIRE_LENGTH;
    default:
      return WIRE_VARINT;
  }
}

/** Writes one value; false (and whatever it wrote is dropped) when it is zero and `emitZero` is not set. */
function writeValue(
  out: JsonOut,
  field: FieldPlan,
  bytes: Buffer,
  reader: { at: number },
  end: number,
  wireType: number,
  depth: number,
  emitZero: boolean,
): boolean {
  if (wireType !== wireTypeOf(field.kind)) unhandled();
  switch (field.kind) {
    case Kind.Int32:
      return writeNumber(out, low32(readVarint(bytes, reader, end)) | 0, emitZero);
    case Kind.Uint32:
      return writeNumber(out, low32(readVarint(bytes, reader, end)), emitZero);
    case Kind.Sint32: {
      const v = low32(readVarint(bytes, reader, end));
      return writeNumber(out, (v >>> 1) ^ -(v & 1), emitZero);
    }
    case Kind.Fixed32:
      return writeNumber(out, readFixed(bytes, reader, end, 4).readUInt32LE(0), emitZero);
    case Kind.Sfixed32:
      return writeNumber(out, readFixed(bytes, reader, end, 4).readInt32LE(0), emitZero);
    case Kind.Int64: {
      const v = readVarint(bytes, reader, end);
      return writeInteger(out, typeof v === "number" ? v : BigInt.asIntN(64, v), emitZero);
    }
    case Kind.Uint64:
      return writeInteger(out, readVarint(bytes, reader, end), emitZero);
    case Kind.Sint64: {
      // Zigzag: 0, -1, 1, -2, … from 0, 1, 2, 3, …
      const v = readVarint(bytes, reader, end);
      const n = typeof v === "number" ? (v % 2 === 0 ? v / 2 : -(v + 1) / 2) : (v >> 1n) ^ -(v & 1n);
      return writeInteger(out, n, emitZero);
    }
    case Kind.Fixed64:
      return writeInteger(out, readFixed(bytes, reader, end, 8).readBigUInt64LE(0), emitZero);
    case Kind.Sfixed64:
      return writeInteger(out, readFixed(bytes, reader, end, 8).readBigInt64LE(0), emitZero);
    case Kind.Bool: {
      const v = readVarint(bytes, reader, end);
      const set = typeof v === "number" ? v !== 0 : v !== 0n;
      if (!set && !emitZero) return false;
      out.ascii(set ? "true" : "false");
      return true;
    }
    case Kind.Enum: {
      const v = low32(readVarint(bytes, reader, end)) | 0;
      if (v === field.enumZero && !emitZero) return false;
      out.ascii(field.enumNames!.get(v) ?? String(v));
      return true;
    }
    case Kind.String: {
      const [from, to] = readLength(bytes, reader, end);
      if (from === to && !emitZero) return false;
      const raw = bytes.subarray(from, to);
      // TextDecoder, which the generic path reads with, drops a leading byte order mark; U+FFFD may stand
      // for a lone surrogate that encoding a held message replaced (see jsonOfMessage).
      if (!isUtf8(raw) || (raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) || raw.includes(REPLACEMENT))
        unhandled();
      out.text(JSON.stringify(raw.toString("utf8")));
      return true;
    }
    case Kind.Bytes: {
      const [from, to] = readLength(bytes, reader, end);
      if (from === to && !emitZero) return false;
      out.byte(0x22);
      out.ascii(bytes.toString("base64", from, to));
      out.byte(0x22);
      return true;
    }
    case Kind.Message: {
      const [from, to] = readLength(bytes, reader, end);
      writeMessage(out, field.message!, bytes, from, to, depth + 1);
      return true;
    }
  }
}

function writeNumber(out: JsonOut, v: number, emitZero: boolean): boolean {
  if (v === 0 && !emitZero) return false;
  out.ascii(String(v));
  return true;
}

/** 64-bit integers are JSON strings. */
function writeInteger(out: JsonOut, v: number | bigint, emitZero: boolean): boolean {
  if ((v === 0 || v === 0n) && !emitZero) return false;
  out.byte(0x22);
  out.ascii(v.toString());
  out.byte(0x22);
  return true;
}

/** The low 32 bits of a varint, unsigned. */
function low32(v: number | bigint): number {
  return typeof v === "number" ? v >>> 0 : Number(BigInt.asUintN(32, v));
}

/**
 * A varint as a number when it has seven bytes or fewer (it then fits a
 * double exactly: revisions, lengths, most IDs), else as a 64-bit bigint.
 */
function readVarint(bytes: Buffer, reader: { at: number }, end: number): number | bigint {
  let at = reader.at;
  let low = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    if (at >= end) unhandled();
    const b = bytes[at++]!;
    low += (b & 0x7f) * scale;
    if (b < 0x80) {
      reader.at = at;
      return low;
    }
    scale *= 128;
  }
  let value = BigInt(low);
  let shift = 49n;
  for (let i = 7; i < 10; i++) {
    if (at >= end) unhandled();
    const b = bytes[at++]!;
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) {
      reader.at = at;
      return BigInt.asUintN(64, value);
    }
    shift += 7n;
  }
  return unhandled();
}

/** A tag or a length: a canonical varint of five bytes at most, up to 2^32 - 1. */
function readVarint32(bytes: Buffer, reader: { at: number }, end: number): number {
  const from = reader.at;
  const value = readVarint(bytes, reader, end);
  if (typeof value !== "number" || value > 0xffffffff || reader.at - from > 5) unhandled();
  return value;
}

function readLength(bytes: Buffer, reader: { at: number }, end: number): [number, number] {
  const length = readVarint32(bytes, reader, end);
  const from = reader.at;
  const to = from + length;
  if (to > end) unhandled();
  reader.at = to;
  return [from, to];
}

function readFixed(bytes: Buffer, reader: { at: number }, end: number, size: number): Buffer {
  const from = reader.at;
  if (from + size > end) unhandled();
  reader.at = from + size;
  return bytes.subarray(from, from + size);
}

/** Steps over a field this schema does not name, as the generic path does. */
function skip(bytes: Buffer, reader: { at: number }, end: number, wireType: number): void {
  switch (wireType) {
    case WIRE_VARINT:
      readVarint(bytes, reader, end);
      return;
    case WIRE_FIXED64:
      readFixed(bytes, reader, end, 8);
      return;
    case WIRE_LENGTH:
      readLength(bytes, reader, end);
      return;
    case WIRE_FIXED32:
      readFixed(bytes, reader, end, 4);
      return;
    default:
      unhandled(); // groups, and wire types that do not exist
  }
}

/** The JSON text as it is written: one buffer, grown by doubling. */
class JsonOut {
  private buffer: Buffer;
  at = 0;

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  byte(c: number): void {
    if (this.at === this.buffer.length) this.grow(1);
    this.buffer[this.at++] = c;
  }

  /** Text of single-byte characters only (keys, numbers, base64). */
  ascii(s: string): void {
    if (this.at + s.length > this.buffer.length) this.grow(s.length);
    this.at += this.buffer.write(s, this.at, "latin1");
  }

  /** Any text, as UTF-8. */
  text(s: string): void {
    const most = s.length * 3;
    if (this.at + most > this.buffer.length) this.grow(most);
    this.at += this.buffer.write(s, this.at, "utf8");
  }

  done(): Buffer {
    return this.buffer.subarray(0, this.at);
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.at + needed));
    this.buffer.copy(next, 0, 0, this.at);
    this.buffer = next;
  }
}
