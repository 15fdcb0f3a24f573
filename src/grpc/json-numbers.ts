import { ScalarType, type DescField, type DescMessage, type JsonObject, type JsonValue } from "@bufbuild/protobuf";

/**
 * JSON from clients, read without rounding. JSON.parse turns every number
 * into a double, so a lease ID such as 7198338028589184775 would name
 * another lease. Here the text is scanned first: every number literal that
 * a double does not hold exactly is quoted before JSON.parse (protobuf's
 * JSON mapping reads 64-bit integers from strings), and every literal is
 * remembered with its place, so that a 64-bit field's value can be judged
 * as etcd judges it and refused in etcd's words.
 */

/** A scalar as the client wrote it. */
export interface Literal {
  /** Its text: a number's digits, or a string's contents. */
  raw: string;
  /** Where it starts in the text (a string: its opening quote). */
  offset: number;
  /** Written as a JSON string rather than a number. */
  quoted: boolean;
}

/** One JSON document of a request, its numbers exact. */
export interface ExactJson {
  value: JsonValue;
  /** Every number, and every short string, by its path (see pathKey). */
  literals: ReadonlyMap<string, Literal>;
  /** The whole text, for positions. */
  text: string;
}

/** Strings longer than this are no 64-bit number, and are not remembered. */
const LONGEST_NUMBER_STRING = 64;
const SEPARATOR = "\u0000";

/** A member's path, as the scanner and the walker both spell it. */
function pathKey(path: ReadonlyArray<string | number>): string {
  return path.join(SEPARATOR);
}

const SAFE_INTEGER = /^-?(0|[1-9]\d{0,14})$/;

/** Whether JSON.parse reads the literal as exactly the integer written. */
function readExactly(raw: string): boolean {
  return SAFE_INTEGER.test(raw) || (/^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw)));
}

/**
 * Reads a body holding one or more JSON documents in a row (a stream's
 * messages, one a line), numbers exact: integers a double would round are
 * quoted before JSON.parse reads them. Throws SyntaxError on malformed JSON.
 */
export function parseExactJson(text: string): ExactJson[] {
  const documents: ExactJson[] = [];
  let at = skipSpace(text, 0);
  while (at < text.length) {
    const literals = new Map<string, Literal>();
    const quotes: number[][] = [];
    const start = at;
    at = skipSpace(text, scanValue(text, at, [], literals, quotes));
    const source = text.slice(start, at);
    let rewritten = source;
    for (let i = quotes.length - 1; i >= 0; i--) {
      const [from, to] = quotes[i]!.map((n) => n - start) as [number, number];
      rewritten = `${rewritten.slice(0, from)}"${rewritten.slice(from, to)}"${rewritten.slice(to)}`;
    }
    documents.push({ value: JSON.parse(rewritten) as JsonValue, literals, text });
  }
  return documents;
}

function skipSpace(text: string, at: number): number {
  while (at < text.length && (text[at] === " " || text[at] === "\n" || text[at] === "\r" || text[at] === "\t")) at++;
  return at;
}

/** Scans one value at `at`; returns where it ends. Syntax is checked by JSON.parse afterwards, except where scanning needs it. */
function scanValue(
  text: string,
  at: number,
  path: Array<string | number>,
  literals: Map<string, Literal>,
  quotes: number[][],
): number {
  at = skipSpace(text, at);
  const c = text[at];
  if (c === "{") {
    at = skipSpace(text, at + 1);
    if (text[at] === "}") return at + 1;
    for (;;) {
      at = skipSpace(text, at);
      if (text[at] !== '"') throw syntaxError(text, at);
      const keyEnd = stringEnd(text, at);
      const key = JSON.parse(text.slice(at, keyEnd)) as string;
      at = skipSpace(text, keyEnd);
      if (text[at] !== ":") throw syntaxError(text, at);
      path.push(key);
      at = skipSpace(text, scanValue(text, at + 1, path, literals, quotes));
      path.pop();
      if (text[at] === "}") return at + 1;
      if (text[at] !== ",") throw syntaxError(text, at);
      at++;
    }
  }
  if (c === "[") {
    at = skipSpace(text, at + 1);
    if (text[at] === "]") return at + 1;
    for (let index = 0; ; index++) {
      path.push(index);
      at = skipSpace(text, scanValue(text, at, path, literals, quotes));
      path.pop();
      if (text[at] === "]") return at + 1;
      if (text[at] !== ",") throw syntaxError(text, at);
      at++;
    }
  }
  if (c === '"') {
    const end = stringEnd(text, at);
    if (end - at <= LONGEST_NUMBER_STRING) {
      literals.set(pathKey(path), { raw: JSON.parse(text.slice(at, end)) as string, offset: at, quoted: true });
    }
    return end;
  }
  const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
  number.lastIndex = at;
  const m = number.exec(text);
  if (m) {
    const raw = m[0];
    literals.set(pathKey(path), { raw, offset: at, quoted: false });
    if (m[1] === undefined && m[2] === undefined && !readExactly(raw)) quotes.push([at, at + raw.length]);
    return at + raw.length;
  }
  for (const word of ["true", "false", "null"]) if (text.startsWith(word, at)) return at + word.length;
  throw syntaxError(text, at);
}

/** Where the string starting at `at` ends (just past its closing quote). */
function stringEnd(text: string, at: number): number {
  let i = at + 1;
  for (;;) {
    const quote = text.indexOf('"', i);
    if (quote === -1) throw syntaxError(text, text.length);
    let backslashes = 0;
    while (text[quote - 1 - backslashes] === "\\") backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    i = quote + 1;
  }
}

function syntaxError(text: string, at: number): SyntaxError {
  if (at >= text.length) return new SyntaxError("unexpected end of JSON input");
  return new SyntaxError(`invalid character '${text[at]}' looking for beginning of value`);
}

const SIXTY_FOUR_BIT = new Set<ScalarType>([
  ScalarType.INT64,
  ScalarType.SINT64,
  ScalarType.SFIXED64,
  ScalarType.UINT64,
  ScalarType.FIXED64,
]);
const UNSIGNED = new Set<ScalarType>([ScalarType.UINT64, ScalarType.FIXED64]);

/** How an etcd release's gateway reads a 64-bit field, and words a refusal. */
export type JsonDialect = "3.4" | "3.5";

/**
 * Puts every 64-bit integer field of `document` (a message of `schema`) in
 * the form protobuf-es reads exactly, a decimal string, having judged the
 * client's literal as the etcd in use does:
 * - etcd 3.4 (jsonpb over Go's encoding/json): plain integers only, as a
 *   number or inside a string; "json: cannot unmarshal number 1.5 into Go
 *   value of type int64";
 * - etcd 3.5 (protojson): any number whose value is a whole number, as a
 *   number or a string (1e3 is 1000); "proto: (line 1:23): invalid value
 *   for int64 field lease: 1.5".
 * Throws a RangeError with etcd's message when etcd would refuse.
 */
export function exact64BitFields(schema: DescMessage, document: ExactJson, dialect: JsonDialect): JsonValue {
  new SixtyFourBitWalk(document, dialect).message(schema, document.value);
  return document.value;
}

/** One walk of a document along its schema, keeping the path it stands on (the literals are found by it). */
class SixtyFourBitWalk {
  private readonly path: Array<string | number> = [];

  constructor(
    private readonly document: ExactJson,
    private readonly dialect: JsonDialect,
  ) {}

  message(schema: DescMessage, json: JsonValue): void {
    if (json === null || typeof json !== "object" || Array.isArray(json)) return;
    for (const key of Object.keys(json)) {
      const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
      if (!field) continue;
      this.at(key, () => {
        const value = json[key]!;
        if (field.fieldKind === "list" && Array.isArray(value)) {
          value.forEach((_item, index) => this.at(index, () => this.element(field, value, index)));
        } else this.element(field, json, key);
      });
    }
  }

  private at(step: string | number, visit: () => void): void {
    this.path.push(step);
    visit();
    this.path.pop();
  }

  private element(field: DescField, holder: JsonObject | JsonValue[], key: string | number): void {
    const slot = holder as Record<string | number, JsonValue>;
    const message =
      field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")
        ? field.message
        : undefined;
    if (message) return this.message(message, slot[key]!);
    const scalar =
      field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")
        ? field.scalar
        : undefined;
    if (scalar === undefined || !SIXTY_FOUR_BIT.has(scalar) || slot[key] === null) return;
    const literal = this.document.literals.get(pathKey(this.path));
    if (!literal) return; // a long string: protobuf-es refuses it in its own words
    const unsigned = UNSIGNED.has(scalar);
    const integer = this.dialect === "3.4" ? plainInteger(literal.raw) : wholeNumber(literal.raw);
    const min = unsigned ? 0n : -(2n ** 63n);
    const max = unsigned ? 2n ** 64n - 1n : 2n ** 63n - 1n;
    if (integer === undefined || integer < min || integer > max) {
      throw new RangeError(refusal(field, literal, unsigned, this.document.text, this.dialect));
    }
    slot[key] = integer.toString();
  }
}

function plainInteger(raw: string): bigint | undefined {
  return /^-?\d+$/.test(raw) ? BigInt(raw) : undefined;
}

/** The integer a decimal literal names, when it names one (1e3, 1.50e2, -0.0); undefined otherwise. */
function wholeNumber(raw: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(raw);
  if (!m) return undefined;
  const digits = `${m[2]}${m[3] ?? ""}`.replace(/^0+(?=\d)/, "");
  const exponent = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  if (digits.replace(/0/g, "") === "") return 0n;
  if (exponent >= 0) {
    if (digits.length + exponent > 40) return undefined; // far beyond 64 bits; no huge BigInt for 1e999999
    return BigInt(m[1] + digits) * 10n ** BigInt(exponent);
  }
  const dropped = digits.slice(exponent);
  if (!/^0*$/.test(dropped)) return undefined;
  const kept = digits.slice(0, exponent) || "0";
  return BigInt(m[1] + kept);
}

function refusal(field: DescField, literal: Literal, unsigned: boolean, text: string, dialect: JsonDialect): string {
  const type = unsigned ? "uint64" : "int64";
  if (dialect === "3.4") {
    if (literal.quoted && !/^-?\d/.test(literal.raw)) {
      return `invalid character '${literal.raw[0] ?? '"'}' looking for beginning of value`;
    }
    return `json: cannot unmarshal number ${literal.raw} into Go value of type ${type}`;
  }
  const shown = literal.quoted ? JSON.stringify(literal.raw) : literal.raw;
  const before = text.slice(0, literal.offset);
  const line = before.split("\n").length;
  const column = [...before.slice(before.lastIndexOf("\n") + 1)].length + 1;
  return `proto: (line ${line}:${column}): invalid value for ${type} field ${field.name}: ${shown}`;
}
