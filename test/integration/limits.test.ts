// Connection-level limits toward clients: gRPC keepalive (enforcement and
// server pings), and HTTP/1.1 header timeouts against slowloris clients.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { WatchRequestSchema, WatchResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { FrameDecoder, frame } from "../../src/grpc/wire.js";
import { useProxy } from "../helpers/fixture.js";
import { WatchStream, eventually } from "../helpers/watch.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("gRPC keepalive: pings that follow data", () => {
  const f = useProxy(1);

  it("a client pinging as it receives watch events (grpc-go's bandwidth probe) stays connected; the same pings with nothing received strike", async () => {
    const session = http2.connect(`http://${f.proxy.address}`);
    session.on("error", () => {});
    let goaway: number | undefined;
    session.on("goaway", (code) => (goaway = code));
    const stream = session.request({
      ":method": "POST",
      ":path": "/etcdserverpb.Watch/Watch",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    const decoder = new FrameDecoder(1 << 20);
    const events: number[] = [];
    let responses = 0;
    stream.on("data", (chunk: Buffer) => {
      for (const m of decoder.push(chunk)) {
        responses++;
        events.push(...fromBinary(WatchResponseSchema, m).events.map((e) => Number(e.kv!.modRevision)));
      }
      session.ping(() => {}); // as grpc-go's BDP estimator does on receiving data
    });
    const request = create(WatchRequestSchema, {
      requestUnion: { case: "createRequest", value: { key: Buffer.from("keepalive/bdp") } },
    });
    stream.write(frame(toBinary(WatchRequestSchema, request)));
    await eventually(() => responses === 1, "Created");
    for (let i = 0; i < 20; i++) {
      await f.direct.unary("KV", "Put", { key: Buffer.from("keepalive/bdp"), value: Buffer.from(`${i}`) });
      await sleep(10);
    }
    await eventually(() => events.length === 20, "every event");
    assert.equal(goaway, undefined, "no GOAWAY for pings that follow data");
    assert.equal(session.closed, false);

    // Nothing comes now: pings inside the minimum time are strikes again.
    for (let i = 0; i < 10 && goaway === undefined && !session.destroyed; i++) {
      session.ping(() => {});
      await sleep(20);
    }
    assert.equal(goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
  });
});

describe("gRPC keepalive toward clients", () => {
  const f = useProxy(1, { proxyArgs: ["--grpc-keepalive-interval=300ms", "--grpc-keepalive-timeout=1s"] });

  it("a client that pings without streams, too often, gets GOAWAY ENHANCE_YOUR_CALM too_many_pings", async () => {
    const session = http2.connect(`http://${f.proxy.address}`);
    session.on("error", () => {});
    const goaway = new Promise<{ code: number; data: string }>((resolve) =>
      session.once("goaway", (code, _last, data) => resolve({ code, data: data?.toString() ?? "" })),
    );
    await new Promise((r) => session.once("connect", r));
    for (let i = 0; i < 10 && !session.closed && !session.destroyed; i++) {
      session.ping(() => {});
      await sleep(20);
    }
    assert.deepEqual(await goaway, { code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, data: "too_many_pings" });
    session.destroy();
  });

  it("pings its clients each interval; a well-behaved client with a watch stays connected", async () => {
    const session = http2.connect(`http://${f.proxy.address}`);
    let pings = 0;
    session.on("ping", () => pings++);
    await new Promise((r) => session.once("connect", r));
    await sleep(1000);
    assert.ok(pings >= 2, `the proxy pinged (${pings} times)`);
    assert.equal(session.closed, false, "answered pings keep the connection");
    session.close();

    const watch = new WatchStream(f.client);
    watch.create({ key: "keepalive/k" });
    await watch.next();
    await sleep(1000);
    assert.equal(watch.ended, undefined);
    watch.close();
  });
});

describe("slowloris", () => {
  const f = useProxy(1);

  it("an HTTP/1.1 client that never finishes its headers does not stall others", async () => {
    const slow = connect(Number(f.proxy.address.split(":")[1]), "127.0.0.1");
    await new Promise((r) => slow.once("connect", r));
    slow.write("GET /livez HTTP/1.1\r\nHost: x\r\n"); // and nothing more
    const r = await fetch(`http://${f.proxy.address}/livez`);
    assert.equal(r.status, 200);
    assert.equal(slow.destroyed, false, "the slow one is left to its header timeout, not served");
    slow.destroy();
  });
});
