/**
 * The header revision of an encoded etcd response (field 1, ResponseHeader,
 * whose field 3 is the revision), read without decoding the rest: a cached
 * range answer can be megabytes of keys. 0 when absent.
 */
export function headerRevision(message: Uint8Array): bigint {
  let at = 0;
  while (at < message.length) {
    const [tag, afterTag] = varint(message, at);
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 2) {
      const [length, start] = varint(message, afterTag);
      const end = start + Number(length);
      if (field === 1) return revisionIn(message.subarray(start, end));
      at = end;
    } else if (wire === 0) at = varint(message, afterTag)[1];
    else if (wire === 1) at = afterTag + 8;
    else if (wire === 5) at = afterTag + 4;
    else return 0n;
  }
  return 0n;
}

function revisionIn(header: Uint8Array): bigint {
  let at = 0;
  while (at < header.length) {
    const [tag, afterTag] = varint(header, at);
    const wire = Number(tag & 7n);
    if (wire !== 0) return 0n; // ResponseHeader holds only varints
    const [value, next] = varint(header, afterTag);
    if (tag >> 3n === 3n) return value;
    at = next;
  }
  return 0n;
}

function varint(bytes: Uint8Array, at: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const b = bytes[at++];
    if (b === undefined) return [value, bytes.length];
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [value, at];
    shift += 7n;
  }
}
