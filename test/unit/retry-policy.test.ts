import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KV, Lease, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { isConnectionFailure, neverReachedEtcd, toClientError, upstreamFailure } from "../../src/upstream/errors.js";
import { isSafeToRepeat } from "../../src/upstream/retry-policy.js";
import { decodeGrpcTimeout, encodeGrpcMessage } from "../../src/grpc/wire.js";

describe("isSafeToRepeat", () => {
  it("reads may be repeated, writes may not", () => {
    assert.ok(isSafeToRepeat(KV.method.range, {}));
    assert.ok(isSafeToRepeat(Lease.method.leaseTimeToLive, {}));
    assert.ok(!isSafeToRepeat(KV.method.put, {}));
    assert.ok(!isSafeToRepeat(KV.method.deleteRange, {}));
    assert.ok(!isSafeToRepeat(Lease.method.leaseGrant, {}));
  });
  it("a Txn is safe only when every op, nested ones too, only reads", () => {
    const range = { request: { case: "requestRange" as const, value: { key: new Uint8Array([1]) } } };
    const put = { request: { case: "requestPut" as const, value: { key: new Uint8Array([1]) } } };
    const readOnly = create(TxnRequestSchema, {
      success: [range],
      failure: [{ request: { case: "requestTxn", value: { success: [range] } } }],
    });
    const writes = create(TxnRequestSchema, {
      success: [range],
      failure: [{ request: { case: "requestTxn", value: { success: [put] } } }],
    });
    assert.ok(isSafeToRepeat(KV.method.txn, readOnly));
    assert.ok(!isSafeToRepeat(KV.method.txn, writes));
  });
});

describe("error classification", () => {
  it("a call that never reached etcd is a connection failure any call may be re-sent after", () => {
    const err = upstreamFailure("not-sent", "connect ECONNREFUSED 127.0.0.1:1", new Error("connect ECONNREFUSED"));
    assert.ok(neverReachedEtcd(err));
    assert.ok(isConnectionFailure(err));
  });
  it("etcd's own errors are neither, whatever their words", () => {
    for (const message of ["etcdserver: leader changed", "transport is closing", "REFUSED_STREAM"]) {
      const err = new ConnectError(message, Code.Unavailable);
      assert.ok(!neverReachedEtcd(err), message);
      assert.ok(!isConnectionFailure(err), message);
    }
  });
  it("a connection lost under a call is a connection failure that may have reached etcd", () => {
    const err = upstreamFailure("connection-lost", "error reading from server: EOF", new Error("read ECONNRESET"));
    assert.ok(isConnectionFailure(err));
    assert.ok(!neverReachedEtcd(err));
  });
  it("cancellation is not the endpoint's fault", () => {
    assert.ok(!isConnectionFailure(new ConnectError("canceled", Code.Canceled)));
  });
  it("toClientError keeps code and message, drops upstream metadata, and keeps the failure's kind", () => {
    const upstream = new ConnectError("etcdserver: key is not provided", Code.InvalidArgument, {
      "content-type": "application/grpc",
    });
    const mine = toClientError(upstream);
    assert.equal(mine.code, Code.InvalidArgument);
    assert.equal(mine.rawMessage, "etcdserver: key is not provided");
    assert.equal([...mine.metadata.keys()].length, 0);
    assert.ok(neverReachedEtcd(toClientError(upstreamFailure("not-sent", "refused"))));
  });
});

describe("encodeGrpcMessage", () => {
  it("escapes only what gRPC requires", () => {
    assert.equal(
      encodeGrpcMessage("etcdserver: mvcc: required revision has been compacted"),
      "etcdserver: mvcc: required revision has been compacted",
    );
    assert.equal(encodeGrpcMessage("100% done\n"), "100%25 done%0A");
    assert.equal(encodeGrpcMessage("ü"), "%C3%BC");
  });
});

describe("grpc-timeout", () => {
  it("parses every unit into whole milliseconds", () => {
    assert.equal(decodeGrpcTimeout("2999876u"), 3000);
    assert.equal(decodeGrpcTimeout("5S"), 5000);
    assert.equal(decodeGrpcTimeout("1H"), 3_600_000);
    assert.equal(decodeGrpcTimeout("250m"), 250);
    assert.equal(decodeGrpcTimeout("1n"), 1);
  });

  it("words a value grpc-go refuses as etcd 3.5 does", () => {
    // Each string is what etcd 3.5.30 answered after "malformed grpc-timeout: ".
    assert.equal(decodeGrpcTimeout("bogus"), 'transport: timeout unit is not recognized: "bogus"');
    assert.equal(decodeGrpcTimeout("1x"), 'transport: timeout unit is not recognized: "1x"');
    assert.equal(decodeGrpcTimeout("12345678901H"), 'transport: timeout string is too long: "12345678901H"');
    assert.equal(decodeGrpcTimeout("-1S"), 'strconv.ParseUint: parsing "-1": invalid syntax');
    assert.equal(decodeGrpcTimeout("S"), 'transport: timeout string is too short: "S"');
  });
});
