import { bytesField, int64Field } from "./scan.js";

/**
 * The header revision of an encoded etcd response (field 1, ResponseHeader,
 * whose field 3 is the revision), read without decoding the rest: a cached
 * range answer can be megabytes of keys. 0 when absent or unreadable.
 */
export function headerRevision(message: Uint8Array): bigint {
  try {
    const header = bytesField(message, 1);
    return header ? int64Field(header, 3) : 0n;
  } catch {
    return 0n;
  }
}
