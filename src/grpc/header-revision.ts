import { bytesField, firstBytesField, int64Field } from "./scan.js";

/**
 * The header revision of an encoded etcd response (field 1, ResponseHeader,
 * whose field 3 is the revision), read without decoding the rest: a cached
 * range answer can be megabytes of keys. 0 when absent or unreadable.
 */
export function headerRevision(message: Uint8Array): bigint {
  return revisionIn(message, bytesField);
}

/**
 * The same from the first bytes of a response (etcd writes the header
 * first): for an answer that is still arriving. 0 when it is not there.
 */
export function leadingHeaderRevision(head: Uint8Array): bigint {
  return revisionIn(head, firstBytesField);
}

function revisionIn(
  message: Uint8Array,
  field: (message: Uint8Array, field: number) => Uint8Array | undefined,
): bigint {
  try {
    const header = field(message, 1);
    return header ? int64Field(header, 3) : 0n;
  } catch {
    return 0n;
  }
}
