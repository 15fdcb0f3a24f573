// Seeded fuzzing of the proxy's HTTP/2 edge: bounded random frame sequences
// and HPACK blocks, each on its own connection to a live proxy process with
// default flags. After every batch the process must be alive and serving,
// and at the end its RSS must be bounded and etcdctl must still work.
// FUZZ_SEED and FUZZ_RUNS override the fixed seed and budget.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { startCli } from "../helpers/cli.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import {
  attacker,
  frame,
  grpcMessage,
  grpcRequestBlock,
  indexed,
  literal,
  literalIndexed,
  PREFACE,
  rangeRequest,
  rssOf,
  settings,
  sleep,
} from "../helpers/h2-attacker.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20261205);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const MB = 1 << 20;

/** Header fields, well-formed or not, that a request block is made of. */
const field = fc.oneof(
  fc.constantFrom(
    literal(":method", "POST"),
    literal(":method", "GET"),
    literal(":scheme", "http"),
    literal(":path", "/etcdserverpb.KV/Range"),
    literal(":path", "/etcdserverpb.Watch/Watch"),
    literal(":path", "/"),
    literal(":path", ""),
    literal(":authority", "x"),
    literal(":status", "200"),
    literal("content-type", "application/grpc"),
    literal("content-type", "application/connect+json"),
    literal("te", "trailers"),
    literal("te", "gzip"),
    literal("connection", "close"),
    literal("Upper", "x"),
    literal("content-length", "3"),
    literal("content-length", "x"),
    literal("grpc-timeout", "1m"),
    literal("grpc-timeout", "99999999999H"),
    literal("token", "t"),
    literalIndexed("token", "t".repeat(100)),
  ),
  fc.integer({ min: 1, max: 200 }).map((i) => indexed(i)),
  fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 40 })).map(([n, v]) => literal(n, v)),
  fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
  fc.integer({ min: 0, max: 8192 }).map((size) => Buffer.from([0x3f, 0xe1, ...(size > 0 ? [0x1f] : [])])),
);

const streamId = fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 7, 9), fc.integer({ min: 0, max: 2 ** 31 - 1 }));

/** One frame: a well-typed one with a random payload, or anything at all. */
const anyFrame = fc.oneof(
  // HEADERS (with CONTINUATION split sometimes) of random fields
  fc
    .tuple(streamId, fc.array(field, { maxLength: 12 }), fc.integer({ min: 0, max: 0x2d }))
    .map(([id, fields, flags]) => frame(1, flags, id, Buffer.concat(fields))),
  fc
    .tuple(streamId, fc.integer({ min: 0, max: 255 }))
    .map(([id, flags]) => frame(1, flags | 0x4, id, Buffer.concat([grpcRequestBlock("/etcdserverpb.KV/Range")]))),
  fc
    .tuple(streamId, fc.integer({ min: 0, max: 255 }), fc.constantFrom("probe", "", "x".repeat(300)))
    .map(([id, flags, key]) => frame(0, flags, id, grpcMessage(rangeRequest(key)))),
  fc
    .tuple(
      fc.integer({ min: 0, max: 12 }),
      fc.integer({ min: 0, max: 255 }),
      streamId,
      fc.uint8Array({ maxLength: 64 }),
    )
    .map(([type, flags, id, payload]) => frame(type, flags, id, Buffer.from(payload))),
  fc
    .array(fc.tuple(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 2 ** 32 - 1 })), { maxLength: 4 })
    .map((pairs) => settings(...pairs)),
  fc.tuple(streamId, fc.integer({ min: 0, max: 2 ** 32 - 1 })).map(([id, inc]) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(inc);
    return frame(8, 0, id, b);
  }),
  fc.uint8Array({ minLength: 1, maxLength: 32 }).map((b) => Buffer.from(b)),
);

const session = fc.record({
  preface: fc.constantFrom("full", "full", "full", "partial", "none"),
  frames: fc.array(anyFrame, { maxLength: 24 }),
});

describe("HTTP/2 fuzzing against a live proxy (seeded)", () => {
  let etcd: EtcdCluster;
  let proxy: Awaited<ReturnType<typeof startCli>>;
  let probe: EtcdGrpcClient;

  before(async () => {
    etcd = await startEtcd(1);
    proxy = await startCli(etcd.endpoints);
    probe = new EtcdGrpcClient(proxy.address);
    await probe.unary("KV", "Put", { key: Buffer.from("probe"), value: Buffer.from("v") });
  });
  after(async () => {
    probe?.close();
    proxy?.child.kill("SIGTERM");
    await proxy?.exited;
    await etcd?.stop();
  });

  it(`survives ${RUNS} random sessions (seed ${SEED}) with bounded memory, serving throughout`, async () => {
    const pid = proxy.child.pid!;
    const before = rssOf(pid);
    let peak = before;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(session, async ({ preface, frames }) => {
        const a = await attacker(proxy.address);
        const head =
          preface === "full"
            ? Buffer.concat([PREFACE, settings()])
            : preface === "partial"
              ? PREFACE.subarray(0, 9)
              : Buffer.alloc(0);
        a.write(Buffer.concat([head, ...frames]));
        await sleep(5);
        a.destroy();
        if (++run % 25 === 0) {
          peak = Math.max(peak, rssOf(pid));
          // Alive and serving: a normal call through the proxy is answered.
          const answer = (await probe.unary("KV", "Range", { key: Buffer.from("probe") }, undefined, 5_000)) as {
            kvs: unknown[];
          };
          return answer.kvs.length === 1;
        }
        return true;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    await sleep(500);
    peak = Math.max(peak, rssOf(pid));
    assert.ok(peak - before < 64 * MB, `RSS grew by ${((peak - before) / MB).toFixed(1)} MB`);
    assert.equal((await ctl(proxy.address, ["get", "probe", "--print-value-only"])).trim(), "v");
  });
});
