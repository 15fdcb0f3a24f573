// The native gRPC lane alone: the proxy's own HTTP/2 server on loopback,
// the lane, and forwards to a fake etcd, called by grpc-js. What a client
// sends reaches etcd as bytes and etcd's answers come back as they were, a
// server stream passes etcd's messages through in order, a bidi stream goes
// through the typed handlers, and an oversized request gets grpc-go's status.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { KV, Maintenance, Watch } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { ErrorCode } from "../../src/http2/frames.js";
import { H2ServerConnection } from "../../src/http2/server.js";
import { createNativeLane } from "../../src/server/native/native-lane.js";
import { forwardAll } from "../../src/services/forward.js";
import { bind } from "../../src/services/handlers.js";
import { rpcTable } from "../../src/services/rpc-table.js";
import { FakeEtcd } from "./fake-etcd.js";

const raw = (b: Buffer) => b;

async function serve(etcd: FakeEtcd, readMaxBytes = 1 << 20) {
  const lane = createNativeLane({
    rpcs: rpcTable([
      bind(KV, forwardAll(KV, etcd)),
      bind(Maintenance, forwardAll(Maintenance, etcd)),
      bind(Watch, forwardAll(Watch, etcd)),
    ]),
    readMaxBytes,
  });
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    new H2ServerConnection(socket, {
      maxConcurrentStreams: 100,
      onStream: (stream) => {
        if (!lane.handle(stream)) stream.reset(ErrorCode.REFUSED_STREAM);
      },
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = new grpc.Client(
    `127.0.0.1:${(server.address() as AddressInfo).port}`,
    grpc.credentials.createInsecure(),
    { "grpc.max_receive_message_length": -1 },
  );
  return {
    client,
    close() {
      client.close();
      server.close();
    },
  };
}

function unary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  path: string,
  input: I,
  output: O,
  request: MessageInitShape<I>,
) {
  return new Promise<ReturnType<typeof fromBinary<O>>>((resolve, reject) =>
    client.makeUnaryRequest(path, raw, raw, Buffer.from(toBinary(input, create(input, request))), (err, answer) =>
      err ? reject(err) : resolve(fromBinary(output, answer!)),
    ),
  );
}

describe("the native gRPC lane, before a fake etcd", () => {
  const etcd = new FakeEtcd();
  const served = serve(etcd);
  after(async () => (await served).close());

  it("relays unary calls to etcd and gives back etcd's answers", async () => {
    const { client } = await served;
    const put = await unary(client, "/etcdserverpb.KV/Put", KV.method.put.input, KV.method.put.output, {
      key: Buffer.from("k"),
      value: Buffer.from("v1"),
    });
    const range = await unary(client, "/etcdserverpb.KV/Range", KV.method.range.input, KV.method.range.output, {
      key: Buffer.from("k"),
    });
    assert.equal(range.header!.revision, put.header!.revision);
    assert.deepEqual(
      range.kvs.map((kv) => Buffer.from(kv.value).toString()),
      ["v1"],
    );
    assert.equal(etcd.calls.get("Put"), 1);
  });

  it("passes a server stream's messages through as etcd sent them, in order", async () => {
    const { client } = await served;
    etcd.snapshot = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) & 0xff));
    const call = client.makeServerStreamRequest(
      "/etcdserverpb.Maintenance/Snapshot",
      raw,
      raw,
      Buffer.from(toBinary(Maintenance.method.snapshot.input, create(Maintenance.method.snapshot.input))),
    );
    const messages: Buffer[] = [];
    call.on("data", (m: Buffer) => messages.push(m));
    const [status] = (await once(call, "status")) as [grpc.StatusObject];
    assert.equal(status.code, grpc.status.OK);
    const answers = messages.map((m) => fromBinary(Maintenance.method.snapshot.output, m));
    assert.deepEqual(Buffer.concat(answers.map((a) => a.blob)), etcd.snapshot);
    assert.deepEqual(
      answers.map((a) => Number(a.remainingBytes)),
      answers.map((_, i) => Math.max(0, etcd.snapshot.length - (i + 1) * 32768)),
    );
  });

  it("serves a bidi stream through its typed handler: a watch sees a put made through the lane", async () => {
    const { client } = await served;
    const watch = client.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", raw, raw);
    const answers: Array<ReturnType<typeof fromBinary<typeof Watch.method.watch.output>>> = [];
    watch.on("data", (m: Buffer) => answers.push(fromBinary(Watch.method.watch.output, m)));
    const request = create(Watch.method.watch.input, {
      requestUnion: { case: "createRequest", value: { key: Buffer.from("w") } },
    });
    watch.write(Buffer.from(toBinary(Watch.method.watch.input, request)));
    while (!answers.some((a) => a.created)) await new Promise((r) => setTimeout(r, 5));
    await unary(client, "/etcdserverpb.KV/Put", KV.method.put.input, KV.method.put.output, {
      key: Buffer.from("w"),
      value: Buffer.from("seen"),
    });
    while (!answers.some((a) => a.events.length > 0)) await new Promise((r) => setTimeout(r, 5));
    const event = answers.find((a) => a.events.length > 0)!.events[0]!;
    assert.equal(Buffer.from(event.kv!.value).toString(), "seen");
    watch.on("error", () => {}); // the cancel below ends it with CANCELLED
    watch.cancel();
  });
});

describe("the native gRPC lane's request limit", () => {
  it("refuses a request over --max-recv-bytes with grpc-go's status, before etcd sees it", async () => {
    const etcd = new FakeEtcd();
    const { client, close } = await serve(etcd, 1000);
    try {
      await assert.rejects(
        unary(client, "/etcdserverpb.KV/Put", KV.method.put.input, KV.method.put.output, {
          key: Buffer.from("big"),
          value: Buffer.alloc(2000),
        }),
        (err: grpc.ServiceError) =>
          err.code === grpc.status.RESOURCE_EXHAUSTED && /received message larger than max/.test(err.details),
      );
      assert.equal(etcd.calls.get("Put"), undefined);
    } finally {
      close();
    }
  });
});
