import { Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { int64Field } from "../grpc/scan.js";
import { PREFIX_BYTES } from "../grpc/wire.js";

/**
 * Keep-alives cross the proxy as bytes: all the coalescer needs of a
 * request or an answer is its lease ID, and etcd's answer goes back to the
 * clients as etcd encoded it. Decoding whole messages for that cost more
 * than everything else a keep-alive does.
 */

/** The lease ID of an encoded LeaseKeepAliveRequest (field 1); etcd's error if it is not one. */
export function leaseIdOfRequest(payload: Uint8Array): bigint {
  try {
    return int64Field(payload, 1);
  } catch {
    // Say what etcd says of a message it cannot decode.
    return decodeRequest(Lease.method.leaseKeepAlive, payload).ID;
  }
}

/** The lease ID of an encoded LeaseKeepAliveResponse (field 2, after the header). */
export function leaseIdOfResponse(payload: Uint8Array): bigint {
  return int64Field(payload, 2);
}

/** The gRPC frame of a LeaseKeepAliveRequest for lease `id`: field 1, a varint. */
export function keepAliveRequestFrame(id: bigint): Buffer {
  const unsigned = BigInt.asUintN(64, id);
  let lo = Number(unsigned & 0xffffffffn);
  let hi = Number(unsigned >> 32n);
  const out = Buffer.allocUnsafe(16); // prefix, tag and at most 10 bytes of varint
  let at = PREFIX_BYTES + 1;
  while (hi > 0 || lo > 0x7f) {
    out[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[at++] = lo;
  out[0] = 0; // not compressed
  out.writeUInt32BE(at - PREFIX_BYTES, 1);
  out[PREFIX_BYTES] = 0x08; // field 1, varint
  return out.subarray(0, at);
}
