// SIGTERM with a stream open on every surface the proxy serves: each ends
// within a second with an error its client can read, and the process exits
// within two. A gateway client such as Patroni otherwise sat out the whole
// grace period without its DCS.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startCli } from "../helpers/cli.js";
import { ETCD_LINE, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";

interface Ended {
  /** Everything the stream sent. */
  body: Buffer;
  /** Milliseconds after SIGTERM at which it ended. */
  afterSignal: number;
}

/** Reads an HTTP answer's body to its end, once its first bytes (the watch's creation) have come. */
async function openStream(
  url: string,
  init: RequestInit,
  signalled: () => number,
): Promise<{ started: Promise<void>; ended: Promise<Ended> }> {
  const response = await fetch(url, { method: "POST", ...init });
  assert.equal(response.status, 200, url);
  const reader = response.body!.getReader();
  const chunks: Buffer[] = [];
  let firstChunk!: () => void;
  const started = new Promise<void>((r) => (firstChunk = r));
  const ended = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) break;
      chunks.push(Buffer.from(value));
      firstChunk();
    }
    return { body: Buffer.concat(chunks), afterSignal: performance.now() - signalled() };
  })();
  return { started, ended };
}

/** An enveloped message (Connect streaming, gRPC-Web): flags, length, payload. */
function envelope(json: object): Buffer {
  const payload = Buffer.from(JSON.stringify(json));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** The last envelope of a body: its flags and payload. */
function lastEnvelope(body: Buffer): { flags: number; payload: string } {
  let at = 0;
  let last = { flags: 0, payload: "" };
  while (at + 5 <= body.length) {
    const length = body.readUInt32BE(at + 1);
    last = { flags: body[at]!, payload: body.subarray(at + 5, at + 5 + length).toString() };
    at += 5 + length;
  }
  return last;
}

describe("SIGTERM with a stream open on every surface", () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(1);
  });
  after(async () => {
    await etcd?.stop();
  });

  it("gateway, Connect, gRPC-Web and native gRPC streams end within 1 s with an error; the process exits within 2 s", async () => {
    const proxy = await startCli(etcd.endpoints);
    const base = `http://${proxy.address}`;
    let signalledAt = 0;
    const signalled = () => signalledAt;
    const client = new EtcdGrpcClient(proxy.address);
    try {
      const key = Buffer.from("shutdown").toString("base64");
      const gateway = await openStream(
        `${base}/v3/watch`,
        { body: JSON.stringify({ create_request: { key } }) },
        signalled,
      );
      const connect = await openStream(
        `${base}/etcdproxy.v1.WatchService/Watch`,
        { headers: { "content-type": "application/connect+json" }, body: envelope({ watches: [{ key }] }) },
        signalled,
      );
      const grpcWeb = await openStream(
        `${base}/etcdproxy.v1.WatchService/Watch`,
        { headers: { "content-type": "application/grpc-web+json" }, body: envelope({ watches: [{ key }] }) },
        signalled,
      );
      const native = client.stream("Watch", "Watch");
      const nativeCreated = new Promise((r) => native.once("data", r));
      const nativeEnded = new Promise<{ code: number; details: string; afterSignal: number }>((resolve) => {
        native.on("error", () => {});
        native.on("status", (s) =>
          resolve({ code: s.code, details: s.details, afterSignal: performance.now() - signalledAt }),
        );
      });
      native.write({ create_request: { key: Buffer.from("shutdown") } });
      await Promise.all([gateway.started, connect.started, grpcWeb.started, nativeCreated]);

      const exited = new Promise<number>((r) => proxy.child.once("exit", () => r(performance.now() - signalledAt)));
      signalledAt = performance.now();
      proxy.child.kill("SIGTERM");

      const g = await gateway.ended;
      const lastLine = JSON.parse(g.body.toString().trim().split("\n").pop()!) as { error: Record<string, unknown> };
      assert.deepEqual(
        lastLine.error,
        ETCD_LINE === "3.4"
          ? { grpc_code: 14, http_code: 503, message: "transport is closing", http_status: "Service Unavailable" }
          : { code: 14, message: "error reading from server: EOF" },
        "the gateway's error line, in etcd's words",
      );
      const c = await connect.ended;
      const end = lastEnvelope(c.body);
      assert.equal(end.flags & 0x02, 0x02, "Connect's end-of-stream message");
      assert.deepEqual(JSON.parse(end.payload), {
        error: { code: "unavailable", message: "etcd-connect-proxy is shutting down" },
      });
      const w = await grpcWeb.ended;
      const trailers = lastEnvelope(w.body);
      assert.equal(trailers.flags & 0x80, 0x80, "gRPC-Web trailers");
      assert.match(trailers.payload, /grpc-status: ?14/);
      const n = await nativeEnded;
      assert.equal(n.code, grpc.status.UNAVAILABLE);
      for (const [surface, ms] of [
        ["gateway", g.afterSignal],
        ["Connect", c.afterSignal],
        ["gRPC-Web", w.afterSignal],
        ["native gRPC", n.afterSignal],
      ] as const) {
        assert.ok(ms < 1000, `the ${surface} stream ended ${Math.round(ms)} ms after SIGTERM`);
      }
      const exitMs = await exited;
      assert.ok(exitMs < 2000, `the proxy exited ${Math.round(exitMs)} ms after SIGTERM`);
      assert.equal(proxy.child.exitCode, 0);
    } finally {
      client.close();
      proxy.child.kill("SIGKILL");
    }
  });
});
