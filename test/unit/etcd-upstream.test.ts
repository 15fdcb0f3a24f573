// The way to etcd, against fake endpoints on loopback (node's HTTP/2 server
// answering gRPC frames, one behaviour each): a call moves past an endpoint
// that refuses connections, a read whose connection is lost under it is
// sent again elsewhere while a write is not (it may have been applied),
// etcd's own error comes back as it is with no failover, and with every
// endpoint down a call ends at its deadline with what went wrong.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { after, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import type { CallContext } from "../../src/call-context.js";
import { KV } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { frame } from "../../src/grpc/wire.js";
import { EtcdUpstream } from "../../src/upstream/etcd-upstream.js";

type Behaviour = "answer" | "drop" | "etcd-error";

interface FakeEndpoint {
  url: string;
  /** Requests received, by gRPC path. */
  received: string[];
  close(): Promise<void>;
}

const servers: FakeEndpoint[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

/** An endpoint that answers every call the one way, as member `memberId`. */
async function fakeEndpoint(behaviour: Behaviour, memberId: bigint): Promise<FakeEndpoint> {
  const received: string[] = [];
  const server = http2.createServer();
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => sockets.add(socket));
  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"]);
    stream.on("data", () => {});
    stream.on("end", () => {
      received.push(path);
      if (behaviour === "drop") {
        for (const socket of sockets) socket.end(); // the connection goes down with the call in flight, no GOAWAY
        return;
      }
      if (behaviour === "etcd-error") {
        stream.respond(
          {
            ":status": 200,
            "content-type": "application/grpc",
            "grpc-status": "9",
            "grpc-message": "etcdserver: no space",
          },
          { endStream: true },
        );
        return;
      }
      const output = path.endsWith("/Range") ? KV.method.range.output : KV.method.put.output;
      const answer = toBinary(output, create(output, { header: { memberId, revision: 7n } }));
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint: FakeEndpoint = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  servers.push(endpoint);
  return endpoint;
}

/** A loopback address nothing listens on. */
async function closedPort(): Promise<string> {
  const server = http2.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise((resolve) => server.close(resolve));
  return url;
}

const OPTIONS = {
  maxSendBytes: 1 << 20,
  maxRecvBytes: 1 << 20,
  keepaliveTimeMs: 0,
  keepaliveTimeoutMs: 0,
  keepaliveWithoutStream: false,
  retryWindowMs: 2_000,
  backoffMinMs: 20,
  backoffMaxMs: 100,
};

const upstream = (endpoints: string[]) => new EtcdUpstream({ ...OPTIONS, endpoints });

const context = (deadlineMs?: number): CallContext => ({
  forwardHeaders: {},
  deadline: deadlineMs === undefined ? undefined : Date.now() + deadlineMs,
  signal: new AbortController().signal,
});

describe("the way to etcd", () => {
  it("moves past an endpoint that refuses connections, and stays on the one that answered", async () => {
    const good = await fakeEndpoint("answer", 2n);
    const etcd = upstream([await closedPort(), good.url]);
    try {
      const answer = await etcd.unary(KV.method.range, { key: Buffer.from("k") }, context());
      assert.equal(answer.header?.memberId, 2n);
      assert.deepEqual(
        etcd.endpoints().map((e) => e.current),
        [false, true],
        "calls go on to the endpoint that answered",
      );
    } finally {
      etcd.close();
    }
  });

  it("sends a read again when its connection went down under it", async () => {
    const dropping = await fakeEndpoint("drop", 1n);
    const good = await fakeEndpoint("answer", 2n);
    const etcd = upstream([dropping.url, good.url]);
    try {
      const read = await etcd.unary(KV.method.range, { key: Buffer.from("k") }, context());
      assert.equal(read.header?.memberId, 2n, "answered by the endpoint that stayed up");
    } finally {
      etcd.close();
    }
  });

  it("does not send a write again when its connection went down under it: it may have been applied", async () => {
    const dropping = await fakeEndpoint("drop", 1n);
    const etcd = upstream([dropping.url]);
    try {
      await assert.rejects(etcd.unary(KV.method.put, { key: Buffer.from("k") }, context()));
      assert.deepEqual(dropping.received, ["/etcdserverpb.KV/Put"], "sent once");
    } finally {
      etcd.close();
    }
  });

  it("returns etcd's own error as it is, and does not ask again", async () => {
    const refusing = await fakeEndpoint("etcd-error", 1n);
    const etcd = upstream([refusing.url]);
    try {
      await assert.rejects(etcd.unary(KV.method.range, { key: Buffer.from("k") }, context()), /etcdserver: no space/);
      assert.deepEqual(refusing.received, ["/etcdserverpb.KV/Range"]);
    } finally {
      etcd.close();
    }
  });

  it("with every endpoint down, ends a call at its deadline with what went wrong", async () => {
    const etcd = upstream([await closedPort(), await closedPort()]);
    try {
      const started = Date.now();
      await assert.rejects(etcd.unary(KV.method.range, { key: Buffer.from("k") }, context(300)), (err: Error) => {
        assert.doesNotMatch(err.message, /^canceled$/);
        return true;
      });
      assert.ok(Date.now() - started < 5_000, "it gave up at about its deadline");
    } finally {
      etcd.close();
    }
  });
});
