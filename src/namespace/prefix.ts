import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Key translation for --namespace P, by etcd's rules (clientv3/namespace):
 * a key k becomes P+k; a range end e becomes P+e, except that "\0" (every
 * key from k on) becomes the end of P's keyspace, and an empty end (one key)
 * stays empty. Keys coming back lose P.
 */
export class KeyPrefix {
  private readonly end: Uint8Array;

  readonly prefix: Uint8Array;

  constructor(prefix: Uint8Array) {
    this.prefix = Uint8Array.from(prefix);
    this.end = prefixEnd(this.prefix);
  }

  /** A request key; etcd refuses an empty one the same way. */
  key(key: Uint8Array): Uint8Array {
    if (key.length === 0) throw new ConnectError("etcdserver: key is not provided", Code.InvalidArgument);
    return this.add(key);
  }

  /** A key where etcd allows it to be empty (Txn compares, Lock and Election names). */
  add(key: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.prefix.length + key.length);
    out.set(this.prefix);
    out.set(key, this.prefix.length);
    return out;
  }

  rangeEnd(end: Uint8Array): Uint8Array {
    if (end.length === 0) return end;
    if (end.length === 1 && end[0] === 0) return this.end;
    return this.add(end);
  }

  /** A key from etcd, without the prefix (etcd only returns keys under it for translated requests). */
  strip(key: Uint8Array): Uint8Array {
    return this.owns(key) ? key.subarray(this.prefix.length) : key;
  }

  owns(key: Uint8Array): boolean {
    if (key.length < this.prefix.length) return false;
    for (let i = 0; i < this.prefix.length; i++) if (key[i] !== this.prefix[i]) return false;
    return true;
  }
}

/**
 * The first key after every key that starts with `prefix`: trailing 0xff
 * bytes are dropped and the last remaining byte incremented. A prefix of
 * only 0xff bytes has no end, which etcd writes as "\0". (etcd's proxy keeps
 * the wrapped bytes, so its namespace "a\xff" also covers the key "b".)
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Uint8Array.from(prefix.subarray(0, i + 1)); // a copy: Buffer's slice() is a view
      end[i]!++;
      return end;
    }
  }
  return new Uint8Array([0]);
}
