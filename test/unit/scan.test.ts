import { create, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  LeaseKeepAliveRequestSchema,
  LeaseKeepAliveResponseSchema,
  LeaseTimeToLiveRequestSchema,
  StatusResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { bytesField, int64Field } from "../../src/grpc/scan.js";
import { keepAliveRequestFrame, leaseIdOfRequest, leaseIdOfResponse } from "../../src/keepalive/keepalive-wire.js";

// Lease IDs across the varint lengths, the sign bit and the extremes.
const ids = [
  0n,
  1n,
  127n,
  128n,
  2n ** 28n - 1n,
  2n ** 28n,
  2n ** 32n + 5n,
  7587870000000000001n,
  -1n,
  -(2n ** 63n),
  2n ** 63n - 1n,
];

describe("reading fields from encoded messages", () => {
  it("reads the lease ID of requests and answers as protobuf-es encodes them", () => {
    for (const ID of ids) {
      assert.equal(
        leaseIdOfRequest(toBinary(LeaseKeepAliveRequestSchema, create(LeaseKeepAliveRequestSchema, { ID }))),
        ID,
      );
      const answer = create(LeaseKeepAliveResponseSchema, {
        header: { revision: 99n, memberId: 2n ** 64n - 1n },
        ID,
        TTL: 30n,
      });
      assert.equal(leaseIdOfResponse(toBinary(LeaseKeepAliveResponseSchema, answer)), ID);
    }
  });

  it("encodes the keep-alive request protobuf-es would", () => {
    for (const ID of ids) {
      const expected = toBinary(LeaseKeepAliveRequestSchema, create(LeaseKeepAliveRequestSchema, { ID }));
      const framed = keepAliveRequestFrame(ID);
      assert.equal(framed.readUInt32BE(1), framed.length - 5);
      // protobuf-es leaves out a zero ID; the explicit 0 means the same.
      if (ID !== 0n) assert.deepEqual(new Uint8Array(framed.subarray(5)), expected);
      assert.equal(leaseIdOfRequest(framed.subarray(5)), ID);
    }
  });

  it("skips other fields of every wire type, and keeps the last of a repeated one", () => {
    const other = toBinary(LeaseTimeToLiveRequestSchema, create(LeaseTimeToLiveRequestSchema, { ID: 5n, keys: true }));
    const message = Buffer.concat([
      Buffer.from([0x08, 0x01]), // ID 1
      Buffer.from([0x11, 1, 2, 3, 4, 5, 6, 7, 8]), // field 2, fixed64
      Buffer.from([0x1a, other.length]),
      other, // field 3, bytes
      Buffer.from([0x25, 1, 2, 3, 4]), // field 4, fixed32
      Buffer.from([0x08, 0x2a]), // ID 42, last
    ]);
    assert.equal(int64Field(message, 1), 42n);
    assert.deepEqual(new Uint8Array(bytesField(message, 3)!), other);
    assert.equal(int64Field(bytesField(message, 3)!, 1), 5n);
    assert.equal(int64Field(message, 9), 0n, "absent");
    assert.equal(bytesField(message, 9), undefined);
  });

  it("refuses malformed bytes, and a bad keep-alive request gets etcd's error", () => {
    for (const bad of [[0x08], [0x08, 0xff], [0x1a, 0x05, 0x01], [0x0f], [0x00, 0x01], [0x09, 1, 2]]) {
      assert.throws(() => int64Field(Uint8Array.from(bad), 1), Error, JSON.stringify(bad));
    }
    assert.throws(
      () => leaseIdOfRequest(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])),
      (err: ConnectError) =>
        err.code === Code.Internal && err.rawMessage.startsWith("grpc: failed to unmarshal the received message "),
    );
  });

  it("reads etcd 3.6's dbSizeQuota (field 12) from a Status answer, which the 3.5 schema cannot name", () => {
    const status = toBinary(
      StatusResponseSchema,
      create(StatusResponseSchema, { version: "3.6.7", dbSize: 1n << 20n, raftIndex: 42n }),
    );
    const quota = 8n << 30n; // 8 GiB
    const withQuota = Buffer.concat([Buffer.from(status), Buffer.from([12 << 3]), varint(quota)]);
    assert.equal(int64Field(withQuota, 12), quota);
    assert.equal(int64Field(status, 12), 0n, "absent before 3.6");
  });
});

function varint(n: bigint): Buffer {
  const out: number[] = [];
  for (; n >= 0x80n; n >>= 7n) out.push(Number(n & 0x7fn) | 0x80);
  out.push(Number(n));
  return Buffer.from(out);
}
