// The consistent cache against a fake etcd (as pure-logic unit tests may
// use), through the real watch hub: random orders of writes inside and
// outside the prefix, compactions, lost watch streams and reads. Every read
// answered, from memory or by etcd, must be the store exactly as it was at
// the revision the answer claims, and no older than etcd's revision when the
// read began (linearizable).
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { internalContext } from "../../src/call-context.js";
import {
  KV,
  RangeRequestSchema,
  RangeResponseSchema,
  type RangeResponse,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { frame } from "../../src/grpc/wire.js";
import { createMetrics } from "../../src/metrics.js";
import { PrefixReplica } from "../../src/replica/prefix-replica.js";
import { ReplicaUpstream } from "../../src/replica/replica-upstream.js";
import { watchJoinCheck, watchUpstream } from "../../src/services/watch.js";
import { ANONYMOUS } from "../../src/upstream/proxy-identity.js";
import { WatchHub } from "../../src/watch/watch-hub.js";
import { seededRandom } from "../helpers/random.js";
import { FakeEtcd } from "./fake-etcd.js";
import { wholeAnswer } from "../../src/upstream/answer.js";

const b = (s: string) => Buffer.from(s, "latin1");
const s = (u: Uint8Array) => Buffer.from(u).toString("latin1");
const settle = () => new Promise((r) => setImmediate(r));

/** `old`: etcd before 3.4.25, whose progress answers overtake the events it owes. */
function lab(old = false) {
  const etcd = new FakeEtcd();
  etcd.progressOvertakes = old;
  const hub = new WatchHub(
    watchUpstream(etcd),
    watchJoinCheck(etcd),
    {
      bufferBytes: 1 << 20,
      batchBytes: 64 << 10,
      fragmentBytes: 2 << 20,
      history: { maxEntries: 16, maxBytes: 64 << 10, replayBatchBytes: 64 << 10 },
      reconnectMinMs: 1,
      reconnectMaxMs: 5,
      progressRetryMs: 20,
      progressOrdered: () => !old,
    },
    createMetrics().watch,
  );
  const counts = { answered: 0, fellBack: 0, interrupted: 0 };
  const replica = new PrefixReplica(
    b("p/"),
    etcd,
    (requests, ctx) => hub.serve(requests, ctx),
    ANONYMOUS,
    {
      pageKeys: 2,
      retryMs: { first: 1, max: 5 },
      overBudgetRetryMs: 50,
      progressRetryMs: 2,
      loadTimeoutMs: 1000,
      eventsOnlyWaitMs: 20,
      progressVouches: () => hub.progressVouches(),
    },
    { fits: () => true, changed: () => {}, interrupted: () => counts.interrupted++ },
  );
  const upstream = new ReplicaUpstream(etcd, [replica], 300, {
    answered: () => counts.answered++,
    fellBack: () => counts.fellBack++,
    sentCheck: () => {},
    checked: () => {},
  });
  return { etcd, hub, replica, upstream, counts };
}

/** The fake's store at `revision`, within [key, end), as key=value lines. */
function truth(etcd: FakeEtcd, revision: bigint, key: string, end: string): string[] {
  const store = etcd.at(revision);
  assert.ok(store, `the fake has revision ${revision}`);
  return [...store.entries()]
    .filter(([k]) => (end === "" ? k === key : k >= key && k < end))
    .sort(([x], [y]) => (x < y ? -1 : 1))
    .map(([k, kv]) => `${k}=${s(kv.value)}`);
}

describe("PrefixReplica and ReplicaUpstream", () => {
  for (const [seed, old] of [1, 2, 3, 4, 5, 6, 7, 8].flatMap((seed) => [
    [seed, false] as const,
    [seed, true] as const,
  ])) {
    const line = old ? "etcd before 3.4.25, whose progress answers overtake owed events" : "etcd 3.5.8 and later";
    it(`answers every read as etcd's store at the revision it claims, never older than the read (${line}, seed ${seed})`, async () => {
      const random = seededRandom(seed);
      const { etcd, hub, replica, upstream, counts } = lab(old);
      const ctx = internalContext(5000);
      const send = (method: typeof KV.method.put | typeof KV.method.deleteRange, request: object) =>
        upstream.unaryBytes(
          method,
          frame(toBinary(method.input, create(method.input, request as never))),
          ctx,
          () => true,
        );
      for (let i = 0; i < 3; i++) await send(KV.method.put, { key: b(`p/k${i}`), value: b(`initial${i}`) });
      replica.start();
      try {
        const reads: Array<Promise<void>> = [];
        for (let step = 0; step < 150; step++) {
          const roll = random();
          const k = `p/k${Math.floor(random() * 5)}`;
          if (roll < 0.3) await send(KV.method.put, { key: b(k), value: b(`v${step}`) });
          else if (roll < 0.38) await send(KV.method.deleteRange, { key: b(k) });
          else if (roll < 0.5) await send(KV.method.put, { key: b("q/outside"), value: b(`${step}`) });
          else if (roll < 0.53) etcd.compact(etcd.revision);
          else if (roll < 0.56) etcd.breakWatches();
          else if (roll < 0.62) etcd.flushWatches();
          else {
            const [key, end] = random() < 0.5 ? ["p/", "p0"] : [k, ""];
            const floor = etcd.revision;
            const request = create(RangeRequestSchema, { key: b(key), rangeEnd: b(end) });
            reads.push(
              upstream
                .unaryBytes(KV.method.range, frame(toBinary(RangeRequestSchema, request)), ctx, () => true)
                .then(wholeAnswer)
                .then((bytes) => {
                  const answer: RangeResponse = fromBinary(RangeResponseSchema, bytes);
                  const at = answer.header!.revision;
                  assert.ok(at >= floor, `answered at ${at}, but etcd was at ${floor} when the read began`);
                  assert.deepEqual(
                    answer.kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}`),
                    truth(etcd, at, key, end),
                    `${key}..${end} at ${at}`,
                  );
                }),
            );
          }
          if (random() < 0.5) await settle();
        }
        await Promise.all(reads);
        assert.ok(counts.answered > 0, `${counts.answered} reads from memory, ${counts.fellBack} sent to etcd`);
      } finally {
        replica.stop();
        hub.close();
      }
    });
  }
});
