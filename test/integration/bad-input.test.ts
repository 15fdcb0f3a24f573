// Bad input never crashes the proxy: every malformed request gets a clear
// error, and the proxy keeps serving the next client.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { useProxy } from "../helpers/fixture.js";
import { outcome } from "../helpers/grpc-client.js";
import { envelope, rawGrpc, rawTcp } from "../helpers/raw.js";

const f = useProxy(1);

// After every case, a well-formed call must still work.
afterEach(async () => {
  const res = await f.client.unary("KV", "Range", { key: Buffer.from("alive") });
  assert.ok(res.header, "the proxy still answers");
});

/** The bytes of RangeRequest{key: "k"}. */
const rangeK = Buffer.from([0x0a, 0x01, 0x6b]);

/** Calls a method by path with grpc-js, bypassing any generated stub. */
function callPath(target: string, path: string): Promise<{ code: number; details: string }> {
  const c = new grpc.Client(target, grpc.credentials.createInsecure());
  return outcome(
    new Promise((resolve, reject) =>
      c.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        rangeK,
        (err: grpc.ServiceError | null, res?: Buffer) => (err ? reject(err) : resolve(res)),
      ),
    ).finally(() => c.close()),
  );
}

describe("bad input", () => {
  it("a Txn with an empty RequestOp gets InvalidArgument, as from etcd", async () => {
    const r = await outcome(f.client.unary("KV", "Txn", { success: [{}], failure: [{}] }));
    assert.deepEqual(r, { code: grpc.status.INVALID_ARGUMENT, details: "etcdserver: key not found" });
  });

  it("an unknown method and an unknown service get Unimplemented, worded as etcd words it", async () => {
    for (const path of ["/etcdserverpb.KV/Nope", "/nope.Nope/Range"]) {
      const viaProxy = await callPath(f.proxy.address, path);
      const viaEtcd = await callPath(f.etcd.endpoints, path);
      assert.equal(viaProxy.code, grpc.status.UNIMPLEMENTED);
      assert.deepEqual(viaProxy, viaEtcd, path);
    }
  });

  it("bytes that are neither HTTP/2 nor HTTP/1.x get the connection closed, with no answer", async () => {
    // As an HTTP/2 server treats a bad preface (h2spec 3.5/2): no HTTP/1.1 400 a client would misread as frames.
    const reply = await rawTcp(f.proxy.address, Buffer.from("\x00\x01\x02garbage\r\n\r\n"));
    assert.equal(reply, "");
  });

  it("a malformed HTTP/1.1 request gets a 400 and a closed connection", async () => {
    const reply = await rawTcp(f.proxy.address, Buffer.from("GET / HTTP/1.1\r\nbad header line\r\n\r\n"));
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request/);
  });

  it("an HTTP/2 preface followed by garbage frames closes only that connection", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const reply = await rawTcp(
      f.proxy.address,
      Buffer.concat([preface, Buffer.from("\xff\xff\xff\xff\xff\xff\xff\xff\xff", "latin1")]),
    );
    // The server answers with its SETTINGS and a GOAWAY, then closes.
    assert.ok(reply.length > 0);
  });

  it("a message longer than the client limit (4 MiB) gets ResourceExhausted", async () => {
    const r = await rawGrpc(f.proxy.address, "/etcdserverpb.KV/Range", envelope(rangeK, 5 * 1024 * 1024));
    assert.equal(r.grpcStatus, grpc.status.RESOURCE_EXHAUSTED, JSON.stringify(r));
  });

  it("a truncated message gets an error", async () => {
    const r = await rawGrpc(f.proxy.address, "/etcdserverpb.KV/Range", envelope(rangeK, 100));
    assert.ok(r.grpcStatus !== undefined && r.grpcStatus !== 0, JSON.stringify(r));
    assert.ok(r.grpcMessage, "with a message saying what was wrong");
  });

  it("bytes that are not protobuf get Internal, as from etcd", async () => {
    const garbage = envelope(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    const viaProxy = await rawGrpc(f.proxy.address, "/etcdserverpb.KV/Range", garbage);
    const viaEtcd = await rawGrpc(f.etcd.endpoints, "/etcdserverpb.KV/Range", garbage);
    assert.equal(viaEtcd.grpcStatus, grpc.status.INTERNAL);
    assert.equal(viaProxy.grpcStatus, viaEtcd.grpcStatus, JSON.stringify(viaProxy));
    assert.match(viaProxy.grpcMessage ?? "", /illegal/);
  });

  it("bytes that are not a keep-alive request end the keep-alive stream with Internal, as from etcd", async () => {
    const garbage = envelope(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    const path = "/etcdserverpb.Lease/LeaseKeepAlive";
    const viaProxy = await rawGrpc(f.proxy.address, path, garbage);
    const viaEtcd = await rawGrpc(f.etcd.endpoints, path, garbage);
    assert.equal(viaEtcd.grpcStatus, grpc.status.INTERNAL);
    assert.equal(viaProxy.grpcStatus, viaEtcd.grpcStatus, JSON.stringify(viaProxy));
    assert.match(viaProxy.grpcMessage ?? "", /illegal/);
  });

  it("bytes that are not a Put get Internal, as from etcd, with the cache in front", async () => {
    for (const garbage of [
      [0xff, 0xff, 0xff, 0xff, 0x0f],
      [0x0a, 0x05, 0x6b],
    ]) {
      const body = envelope(Buffer.from(garbage));
      const viaProxy = await rawGrpc(f.proxy.address, "/etcdserverpb.KV/Put", body);
      const viaEtcd = await rawGrpc(f.etcd.endpoints, "/etcdserverpb.KV/Put", body);
      assert.equal(viaEtcd.grpcStatus, grpc.status.INTERNAL);
      assert.equal(viaProxy.grpcStatus, viaEtcd.grpcStatus, JSON.stringify(viaProxy));
      // The words after etcd's own prefix are the protobuf library's; Connect's gRPC handler has its own prefix.
      const prefix = (message: string | undefined) => message?.split(": ")[0];
      if (process.env.PROXY_LANE !== "connect") assert.equal(prefix(viaProxy.grpcMessage), prefix(viaEtcd.grpcMessage));
    }
  });

  it("a compressed message in an encoding the client did not declare gets an error", async () => {
    const r = await rawGrpc(f.proxy.address, "/etcdserverpb.KV/Range", envelope(rangeK, rangeK.length, 1));
    assert.ok(r.grpcStatus !== undefined && r.grpcStatus !== 0, JSON.stringify(r));
  });

  it("a wrong content type gets an HTTP error, not a crash", async () => {
    const res = await fetch(`http://${f.proxy.address}/etcdserverpb.KV/Range`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "hello",
    });
    assert.ok(res.status >= 400 && res.status < 500, String(res.status));
  });

  it("an RPC path called with a method other than POST or GET gets 405", async () => {
    for (const method of ["PUT", "DELETE", "PATCH"]) {
      const res = await fetch(`http://${f.proxy.address}/etcdserverpb.KV/Range`, {
        method,
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(res.status, 405, method);
    }
  });

  it("GET serves only methods free of side effects, as Connect does", async () => {
    const message = encodeURIComponent(JSON.stringify({ key: Buffer.from("k").toString("base64") }));
    const get = (path: string) => fetch(`http://${f.proxy.address}${path}?encoding=json&message=${message}`);
    const range = await get("/etcdserverpb.KV/Range");
    assert.equal(range.status, 200, await range.text());
    assert.equal((await get("/etcdserverpb.KV/Put")).status, 405);
  });

  it("a Connect JSON request with invalid JSON gets invalid_argument", async () => {
    const res = await fetch(`http://${f.proxy.address}/etcdserverpb.KV/Range`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: string }).code, "invalid_argument");
  });
});
