// Large requests gathered as they arrived (GatheredFrame): a 1 MiB Put goes
// on to etcd in the pieces it came in. Whatever DATA frames the client cut
// it into, etcd must store the client's bytes exactly, a cached read of the
// key must see the new value, and a malformed body must get etcd's answer.
import { create, toBinary } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { PutRequestSchema, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { RunningProxy } from "../../src/main.js";
import { useProxy } from "../helpers/fixture.js";
import { proxyMetric } from "../helpers/metrics.js";
import { startTestProxy } from "../helpers/proxy.js";
import { envelope } from "../helpers/raw.js";

const VALUE_BYTES = 1 << 20;

interface Outcome {
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
}

/**
 * Sends `body` to `path` written in pieces of `pieceBytes` (the first one
 * `firstBytes` long), each flushed on its own so that it travels as its own
 * DATA frame.
 */
async function send(
  address: string,
  path: string,
  body: Buffer,
  pieceBytes: number,
  firstBytes = pieceBytes,
): Promise<Outcome> {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  try {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const outcome = new Promise<Outcome>((resolve, reject) => {
      const seen: Outcome = { grpcStatus: undefined, grpcMessage: undefined };
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) seen.grpcStatus = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) seen.grpcMessage = decodeURIComponent(String(h["grpc-message"]));
      };
      req.on("response", take);
      req.on("trailers", take);
      req.on("data", () => {});
      req.on("close", () => resolve(seen));
      req.on("error", reject);
    });
    for (let at = 0; at < body.length;) {
      const end = Math.min(body.length, at + (at === 0 ? firstBytes : pieceBytes));
      if (!req.write(body.subarray(at, end))) await new Promise((resolve) => req.once("drain", resolve));
      else await new Promise((resolve) => setImmediate(resolve));
      at = end;
    }
    req.end();
    return await outcome;
  } finally {
    session.close();
  }
}

const putBody = (key: string, value: Buffer) =>
  envelope(Buffer.from(toBinary(PutRequestSchema, create(PutRequestSchema, { key: Buffer.from(key), value }))));

describe("large requests, passed on as they arrived", () => {
  const f = useProxy(1, { proxyArgs: ["--cache-ttl=1m"] });
  let namespaced: RunningProxy;
  before(async () => {
    namespaced = await startTestProxy(f.etcd.endpoints, ["--namespace=ns/"]);
  });
  after(async () => {
    await namespaced?.close();
  });

  const stored = async (key: string) => {
    const answer = (await f.direct.unary("KV", "Range", { key: Buffer.from(key) })) as {
      kvs: Array<{ value: Buffer }>;
    };
    return answer.kvs[0] && Buffer.from(answer.kvs[0].value);
  };
  const etcdAddress = () => f.etcd.members[0]!.endpoint.replace(/^https?:\/\//, "");
  const readThroughProxy = async (key: string) => {
    const answer = (await f.client.unary("KV", "Range", { key: Buffer.from(key), serializable: true })) as {
      kvs: Array<{ value: Buffer }>;
    };
    return answer.kvs[0] && Buffer.from(answer.kvs[0].value);
  };

  for (const [name, pieceBytes, firstBytes] of [
    ["16 KiB DATA frames, kept as they came", 16384, 16384],
    ["its prefix split over two frames", 16384, 3],
    ["1 KiB DATA frames, joined", 1024, 1024],
  ] as const) {
    it(`a 1 MiB Put sent in ${name} reaches etcd byte for byte, and a cached read of its key sees it`, async () => {
      const key = `big/${pieceBytes}-${firstBytes}`;
      await f.client.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("small") });
      const hits = () => proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total");
      const before = await hits();
      assert.deepEqual(await readThroughProxy(key), Buffer.from("small"));
      assert.deepEqual(await readThroughProxy(key), Buffer.from("small"));
      if (process.env.PROXY_LANE !== "connect") assert.equal(await hits(), before + 1, "the key's read is cached");

      const value = randomBytes(VALUE_BYTES);
      const outcome = await send(f.proxy.address, "/etcdserverpb.KV/Put", putBody(key, value), pieceBytes, firstBytes);
      assert.equal(outcome.grpcStatus, "0", outcome.grpcMessage);
      assert.ok((await stored(key))?.equals(value), "etcd holds the client's bytes");
      assert.ok((await readThroughProxy(key))?.equals(value), "the cached entry went with the Put");
    });
  }

  it("a 1 MiB value in a Txn, and a namespaced Put, arrive whole", async () => {
    const value = randomBytes(VALUE_BYTES);
    const txn = create(TxnRequestSchema, {
      success: [{ request: { case: "requestPut", value: { key: Buffer.from("big/txn"), value } } }],
    });
    const outcome = await send(
      f.proxy.address,
      "/etcdserverpb.KV/Txn",
      envelope(Buffer.from(toBinary(TxnRequestSchema, txn))),
      16384,
    );
    assert.equal(outcome.grpcStatus, "0", outcome.grpcMessage);
    assert.ok((await stored("big/txn"))?.equals(value));

    const other = randomBytes(VALUE_BYTES);
    const put = await send(namespaced.address, "/etcdserverpb.KV/Put", putBody("big/ns", other), 16384);
    assert.equal(put.grpcStatus, "0", put.grpcMessage);
    assert.ok((await stored("ns/big/ns"))?.equals(other), "stored under the namespace");
    assert.equal(await stored("big/ns"), undefined);
  });

  it("a large body cut short gets etcd's own status, and the proxy goes on", async () => {
    const value = randomBytes(VALUE_BYTES);
    const body = putBody("big/short", value);
    const short = body.subarray(0, body.length - 1); // the prefix announces a byte more than comes
    const fromEtcd = await send(etcdAddress(), "/etcdserverpb.KV/Put", short, 16384);
    const fromProxy = await send(f.proxy.address, "/etcdserverpb.KV/Put", short, 16384);
    assert.equal(fromEtcd.grpcStatus, "2", JSON.stringify(fromEtcd));
    if (process.env.PROXY_LANE === "connect") {
      // Connect's gRPC handler words it its own way.
      assert.notEqual(fromProxy.grpcStatus, "0");
      assert.ok(fromProxy.grpcMessage, JSON.stringify(fromProxy));
    } else assert.deepEqual(fromProxy, fromEtcd);
    assert.equal(await stored("big/short"), undefined);
    const fine = await send(f.proxy.address, "/etcdserverpb.KV/Put", body, 16384);
    assert.equal(fine.grpcStatus, "0", fine.grpcMessage);
    assert.ok((await stored("big/short"))?.equals(value));
  });

  it("a body with more after its message is served as etcd serves it: the first message, the rest ignored", async () => {
    const first = randomBytes(VALUE_BYTES);
    for (const [address, key] of [
      [etcdAddress(), "big/twice-etcd"],
      [f.proxy.address, "big/twice-proxy"],
    ] as const) {
      const body = Buffer.concat([putBody(key, first), putBody(key, Buffer.from("second")), Buffer.from([1, 2, 3])]);
      const outcome = await send(address, "/etcdserverpb.KV/Put", body, 16384);
      if (address === f.proxy.address && process.env.PROXY_LANE === "connect") {
        assert.notEqual(outcome.grpcStatus, "0", "Connect's gRPC handler refuses a second message");
        continue;
      }
      assert.equal(outcome.grpcStatus, "0", `${key}: ${JSON.stringify(outcome)}`);
      assert.ok((await stored(key))?.equals(first), key);
    }
  });
});
