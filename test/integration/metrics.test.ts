// Metrics as an operator scrapes them: the proxy's own registry at
// /proxy/metrics (gRPC server counters from whichever lane served the call,
// endpoint health), etcd's metrics at /metrics with failover, and the same
// paths on --metrics-addr.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ctl } from "../helpers/etcdctl.js";
import { memberInUse, useProxy } from "../helpers/fixture.js";
import { outcome } from "../helpers/grpc-client.js";
import { freePort } from "../helpers/ports.js";
import { startTestProxy } from "../helpers/proxy.js";

/** The value of one sample line, e.g. metric('grpc_server_started_total{...}'). */
async function sample(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const rpc = (type: string, service: string, method: string) =>
  `grpc_type="${type}",grpc_service="${service}",grpc_method="${method}"`;

describe("metrics, 3 members", () => {
  const f = useProxy(3);

  it("gRPC server counters count calls, codes and stream messages", async () => {
    const url = `http://${f.proxy.address}/proxy/metrics`;
    const range = rpc("unary", "etcdserverpb.KV", "Range");
    const before = await sample(url, `grpc_server_started_total{${range}}`);
    const okBefore = await sample(url, `grpc_server_handled_total{${range},grpc_code="OK"}`);
    const badBefore = await sample(url, `grpc_server_handled_total{${range},grpc_code="InvalidArgument"}`);
    for (let i = 0; i < 5; i++) await f.client.unary("KV", "Range", { key: Buffer.from("m/k") });
    assert.equal((await outcome(f.client.unary("KV", "Range", { key: Buffer.alloc(0) }))).code, 3);

    assert.equal(await sample(url, `grpc_server_started_total{${range}}`), before + 6);
    assert.equal(await sample(url, `grpc_server_handled_total{${range},grpc_code="OK"}`), okBefore + 5);
    assert.equal(await sample(url, `grpc_server_handled_total{${range},grpc_code="InvalidArgument"}`), badBefore + 1);
    assert.ok((await sample(url, `grpc_server_handling_seconds_count{${range}}`)) >= 6);

    const watch = rpc("bidi_stream", "etcdserverpb.Watch", "Watch");
    const receivedBefore = await sample(url, `grpc_server_msg_received_total{${watch}}`);
    const call = f.client.stream("Watch", "Watch");
    call.on("error", () => {}); // the cancel below ends it with CANCELLED
    await new Promise<void>((resolve) => {
      call.once("data", () => resolve());
      call.write({ create_request: { key: Buffer.from("m/w") } });
    });
    call.cancel();
    assert.equal(await sample(url, `grpc_server_msg_received_total{${watch}}`), receivedBefore + 1);
    assert.ok((await sample(url, `grpc_server_msg_sent_total{${watch}}`)) >= 1);
  });

  it("reports each upstream endpoint's health", async () => {
    const url = `http://${f.proxy.address}/proxy/metrics`;
    for (const m of f.etcd.members) {
      assert.equal(
        await sample(url, `etcd_grpc_proxy_upstream_endpoint_up{endpoint="${m.clientUrl}"}`),
        1,
        m.clientUrl,
      );
    }
  });

  it("/metrics serves etcd's metrics, and still does when the member in use dies", async () => {
    const url = `http://${f.proxy.address}/metrics`;
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /^etcd_server_has_leader 1$/m);
    const victim = memberInUse(f.proxy, f.etcd);
    await f.etcd.kill(victim);
    try {
      // A call notices the dead member and moves the proxy off it.
      await ctl(f.proxy.address, ["get", "m/k"]);
      const after = await fetch(url);
      assert.equal(after.status, 200);
      assert.match(await after.text(), /^etcd_server_has_leader 1$/m);
    } finally {
      await f.etcd.restart(victim);
    }
  });

  it("--metrics-addr serves the same HTTP paths on a second listener", async () => {
    const metricsPort = await freePort();
    const proxy = await startTestProxy(f.etcd.members[0]!.endpoint, [`--metrics-addr=http://127.0.0.1:${metricsPort}`]);
    try {
      const base = `http://127.0.0.1:${metricsPort}`;
      assert.deepEqual(await (await fetch(`${base}/health`)).json(), { health: "true", reason: "" });
      assert.deepEqual(await (await fetch(`${base}/proxy/health`)).json(), { health: "true", reason: "" });
      assert.match(await (await fetch(`${base}/proxy/metrics`)).text(), /^# TYPE grpc_server_started_total counter$/m);
      assert.match(await (await fetch(`${base}/metrics`)).text(), /^etcd_server_has_leader 1$/m);
    } finally {
      await proxy.close();
    }
    await assert.rejects(fetch(`http://127.0.0.1:${metricsPort}/health`), "the listener closes with the proxy");
  });
});
