/**
 * RFC 9113 §8.2–8.3 for header blocks a client sends to the proxy: what
 * makes a request (or its trailers) malformed. A malformed block is a stream
 * error of type PROTOCOL_ERROR; the connection goes on.
 *
 * The HPACK decoder feeds every field of a block through one `FieldRules`
 * as it decodes, in order: duplicates and ordering are only visible there,
 * since the decoded HeaderList joins repeated names.
 */

/** Which rules a block is held to. */
export type BlockKind = "request" | "trailers";

/** Headers that only mean something to one HTTP/1.1 hop (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/** RFC 9110 tchar, lowercase only (uppercase names are malformed in HTTP/2). */
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

/** Checks one block's fields as they are decoded; `verdict` says what, if anything, was wrong. */
export class FieldRules {
  private kind: BlockKind = "request";
  private problem: string | undefined;
  private regularSeen = false;
  private pseudoSeen = 0;
  private connect = false;

  /** Starts a new block. */
  reset(kind: BlockKind): void {
    this.kind = kind;
    this.problem = undefined;
    this.regularSeen = false;
    this.pseudoSeen = 0;
    this.connect = false;
  }

  /** One field; `charsChecked`: its name and value are known to be made of allowed characters (see fieldCharsOk). */
  field(name: string, value: string, charsChecked = false): void {
    if (this.problem !== undefined) return;
    this.problem = this.check(name, value, charsChecked);
  }

  /** What made the block malformed, or undefined when it is well formed. */
  verdict(): string | undefined {
    if (this.problem !== undefined || this.kind === "trailers") return this.problem;
    const has = (bit: number) => (this.pseudoSeen & bit) !== 0;
    if (!has(PSEUDO_BIT[":method"]!)) return "missing :method";
    // CONNECT names only an authority; this proxy serves none, but the block is well formed.
    if (this.connect) return has(PSEUDO_BIT[":authority"]!) ? undefined : "CONNECT without :authority";
    if (!has(PSEUDO_BIT[":scheme"]!)) return "missing :scheme";
    if (!has(PSEUDO_BIT[":path"]!)) return "missing :path";
    return undefined;
  }

  private check(name: string, value: string, charsChecked: boolean): string | undefined {
    if (name.length === 0) return "empty field name";
    if (name.charCodeAt(0) === 0x3a /* ':' */) {
      if (this.kind === "trailers") return `pseudo-header ${name} in trailers`;
      if (this.regularSeen) return `pseudo-header ${name} after a regular field`;
      const bit = PSEUDO_BIT[name];
      if (bit === undefined) return `pseudo-header ${name} is not a request's`;
      if (this.pseudoSeen & bit) return `duplicate ${name}`;
      this.pseudoSeen |= bit;
      if (name === ":path" && value.length === 0) return "empty :path";
      if (name === ":method") this.connect = value === "CONNECT";
      return charsChecked ? undefined : badValue(value);
    }
    this.regularSeen = true;
    if (!charsChecked && !nameOk(name)) return `invalid character in field name ${JSON.stringify(name)}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === "te" && value !== "trailers") return `te: ${value}`;
    return charsChecked ? undefined : badValue(value);
  }
}

/**
 * Whether a field's name and value are made of allowed characters: checked
 * once when a field enters the HPACK dynamic table, so the many requests
 * that refer to it by index skip the scan.
 */
export function fieldCharsOk(name: string, value: string): boolean {
  return nameOk(name.charCodeAt(0) === 0x3a ? name.slice(1) : name) && badValue(value) === undefined;
}

function nameOk(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || NAME_CHAR[c] === 0) return false;
  }
  return true;
}

/** The request pseudo-headers, each a bit of `pseudoSeen`. */
const PSEUDO_BIT: Record<string, number | undefined> = { ":method": 1, ":scheme": 2, ":path": 4, ":authority": 8 };

/** RFC 9113 §8.2.1: no NUL, CR or LF, and no whitespace at either end. */
function badValue(value: string): string | undefined {
  const n = value.length;
  if (n === 0) return undefined;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09)
    return "field value with surrounding whitespace";
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return "field value with NUL, CR or LF";
  }
  return undefined;
}

/** A content-length field's value, or undefined when absent; NaN when it is not one non-negative integer. */
export function contentLength(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return /^[0-9]{1,15}$/.test(value) ? Number(value) : NaN;
}
