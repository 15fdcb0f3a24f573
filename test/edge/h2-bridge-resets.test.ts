// Every client's bridged streams (gRPC-Web, Connect, the gateway, the
// dashboard) share one in-process HTTP/2 session to node's server, and
// node's server (nghttp2) ends a session whose peer resets more than 1,000
// streams in a burst. Clients resetting their streams must not make the
// proxy fail everyone else's: h2spec's full run reached that limit, and a
// request in flight on the bridge then failed with INTERNAL_ERROR.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { startCli } from "../helpers/cli.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";

describe("the bridge under many client resets", () => {
  let etcd: EtcdCluster;
  let proxy: Awaited<ReturnType<typeof startCli>>;
  before(async () => {
    etcd = await startEtcd(1);
    proxy = await startCli(etcd.endpoints);
  });
  after(async () => {
    proxy?.child.kill("SIGKILL");
    await etcd?.stop();
  });

  it("1,500 bridged streams reset by their clients leave another client's stream and new requests working", async () => {
    const origin = `http://${proxy.address}`;
    // A browser-style watch on the bridge (Connect streaming JSON), open throughout.
    const watcher = http2.connect(origin);
    const key = Buffer.from("bridge/k").toString("base64");
    const payload = Buffer.from(JSON.stringify({ watches: [{ key }] }));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(payload.length, 1);
    const watch = watcher.request({
      ":method": "POST",
      ":path": "/etcdproxy.v1.WatchService/Watch",
      "content-type": "application/connect+json",
    });
    let received = "";
    watch.setEncoding("utf8");
    watch.on("data", (d: string) => (received += d));
    let watchError: unknown;
    watch.on("error", (err) => (watchError = err));
    watch.end(Buffer.concat([head, payload]));
    const until = Date.now() + 10_000;
    while (!received.includes("created") && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.match(received, /created/);

    // Three clients, 500 resets each (within the proxy's own per-connection allowance).
    for (let c = 0; c < 3; c++) {
      const resetter = http2.connect(origin);
      await new Promise((r) => resetter.once("connect", r));
      for (let i = 0; i < 500; i++) {
        const req = resetter.request({ ":method": "GET", ":path": "/" });
        req.on("error", () => {});
        req.close(http2.constants.NGHTTP2_CANCEL);
      }
      await new Promise((r) => setTimeout(r, 100));
      resetter.close();
    }

    assert.equal(await ctl(proxy.address, ["put", "bridge/k", "after"]), "OK\n");
    const seen = Date.now() + 10_000;
    while (!received.includes(Buffer.from("after").toString("base64")) && Date.now() < seen) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(watchError, undefined, "the watch on the bridge was not failed");
    assert.ok(received.includes(Buffer.from("after").toString("base64")), "the watch still delivers events");
    const page = await fetch(`${origin}/`);
    assert.equal(page.status, 200);
    watch.close();
    watcher.close();
  });
});
