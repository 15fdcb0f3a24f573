// Connection-level limits toward clients: gRPC keepalive (enforcement and
// server pings), and HTTP/1.1 header timeouts against slowloris clients.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { useProxy } from "../helpers/fixture.js";
import { WatchStream } from "../helpers/watch.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("gRPC keepalive toward clients", () => {
  const f = useProxy(1, { proxyArgs: ["--grpc-keepalive-interval=300ms", "--grpc-keepalive-timeout=1s"] });

  it("a client that pings without streams, too often, gets GOAWAY ENHANCE_YOUR_CALM too_many_pings", async () => {
    const session = http2.connect(`http://${f.proxy.address}`);
    session.on("error", () => {});
    const goaway = new Promise<{ code: number; data: string }>((resolve) =>
      session.once("goaway", (code, _last, data) => resolve({ code, data: data?.toString() ?? "" })),
    );
    await new Promise((r) => session.once("connect", r));
    for (let i = 0; i < 4 && !session.closed; i++) {
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
