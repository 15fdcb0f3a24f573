// Kubernetes objects as kube-apiserver stores them in etcd: the magic
// "k8s\0", then a runtime.Unknown message (1: typeMeta {1: apiVersion,
// 2: kind}, 2: raw, 3: contentEncoding, 4: contentType). The raw object is
// protobuf whose schema the dashboard does not have, so it is shown as
// protobuf fields: numbers, strings, nested messages, bytes.

const MAGIC = [0x6b, 0x38, 0x73, 0x00]; // "k8s\0"
const MAX_DEPTH = 12;

export function isKubernetesObject(value: Uint8Array): boolean {
  return value.length >= MAGIC.length && MAGIC.every((b, i) => value[i] === b);
}

/** One protobuf field as read from the wire. */
interface Field {
  number: number;
  value: bigint | string | Uint8Array | Field[];
}

/** The object in words: its type, then its fields, indented. */
export function describeKubernetesObject(value: Uint8Array): string {
  const unknown = readMessage(value.subarray(MAGIC.length));
  if (!unknown) return "not a Kubernetes protobuf object (its envelope does not parse)";
  const typeMeta = unknown.find((f) => f.number === 1);
  const meta = typeMeta && typeMeta.value instanceof Uint8Array ? (readMessage(typeMeta.value) ?? []) : [];
  const str = (fields: Field[], n: number) => {
    const f = fields.find((x) => x.number === n);
    return f?.value instanceof Uint8Array ? decodeUtf8(f.value) : undefined;
  };
  const lines = [`apiVersion: ${str(meta, 1) ?? "?"}`, `kind: ${str(meta, 2) ?? "?"}`];
  const encoding = str(unknown, 3);
  const contentType = str(unknown, 4);
  if (encoding) lines.push(`contentEncoding: ${encoding}`);
  if (contentType) lines.push(`contentType: ${contentType}`);
  const raw = unknown.find((f) => f.number === 2);
  if (raw?.value instanceof Uint8Array) {
    lines.push("raw object (protobuf fields by number):");
    write(lines, shape(raw.value, 0), 1);
  }
  return lines.join("\n");
}

/** A length-delimited payload as a message, a string or bytes, whichever it plausibly is. */
function shape(bytes: Uint8Array, depth: number): Field["value"] {
  const text = decodeUtf8(bytes);
  const printable = text !== undefined && /^[\p{L}\p{N}\p{P}\p{S}\p{Zs}\n\t]*$/u.test(text);
  if (depth < MAX_DEPTH && bytes.length > 0 && !printable) {
    const fields = readMessage(bytes);
    if (fields)
      return fields.map((f) => ({ ...f, value: f.value instanceof Uint8Array ? shape(f.value, depth + 1) : f.value }));
  }
  return printable ? text : bytes;
}

function write(lines: string[], value: Field["value"], indent: number): void {
  const pad = "  ".repeat(indent);
  if (!Array.isArray(value)) return void lines.push(pad + scalar(value));
  for (const f of value) {
    if (Array.isArray(f.value)) {
      lines.push(`${pad}${f.number}:`);
      write(lines, f.value, indent + 1);
    } else {
      lines.push(`${pad}${f.number}: ${scalar(f.value)}`);
    }
  }
}

function scalar(value: bigint | string | Uint8Array): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return JSON.stringify(value);
  return `0x${[...value].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Reads every field of a protobuf message, or undefined if the bytes are not one. */
function readMessage(bytes: Uint8Array): Field[] | undefined {
  const fields: Field[] = [];
  let at = 0;
  const varint = (): bigint | undefined => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (at >= bytes.length) return undefined;
      const b = bytes[at++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
    }
    return undefined;
  };
  while (at < bytes.length) {
    const key = varint();
    if (key === undefined) return undefined;
    const number = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (number < 1) return undefined;
    if (wire === 0) {
      const v = varint();
      if (v === undefined) return undefined;
      fields.push({ number, value: v });
    } else if (wire === 2) {
      const length = varint();
      if (length === undefined || at + Number(length) > bytes.length) return undefined;
      fields.push({ number, value: bytes.subarray(at, at + Number(length)) });
      at += Number(length);
    } else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      if (at + size > bytes.length) return undefined;
      fields.push({ number, value: bytes.subarray(at, at + size) });
      at += size;
    } else {
      return undefined; // groups (3, 4) are not used by Kubernetes; anything else is not protobuf
    }
  }
  return fields;
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
