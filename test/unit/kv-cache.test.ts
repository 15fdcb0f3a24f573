// The range cache in front of a fake etcd whose answers and watch events
// come late and out of order: whatever the interleaving of cached reads,
// writes through the proxy and writes by another route, every serializable
// answer is what etcd held at the revision it claims, a read sent after a
// write through the proxy was answered sees that write, and a linearizable
// read sees everything etcd had when it was sent.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { create, toBinary } from "@bufbuild/protobuf";
import type { CallContext } from "../../src/call-context.js";
import { KvCache } from "../../src/cache/kv-cache.js";
import { KV, WatchResponseSchema, type WatchResponse } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { createMetrics } from "../../src/metrics.js";
import { kvService } from "../../src/services/kv.js";
import { ANONYMOUS } from "../../src/upstream/proxy-identity.js";
import { AsyncQueue } from "../../src/util/async-queue.js";
import { seededDelays, SlowEtcd } from "./fake-etcd.js";

const ctx: CallContext = { forwardHeaders: {}, deadline: undefined, signal: new AbortController().signal };
const b = (s: string) => Buffer.from(s, "latin1");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Step =
  | { kind: "serializable"; key: string; client: number }
  | { kind: "linearizable"; key: string; client: number }
  | { kind: "put"; key: string; client: number }
  | { kind: "delete"; key: string; client: number }
  | { kind: "foreign put"; key: string; client: number };

const step: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom("serializable", "serializable", "linearizable", "put", "delete", "foreign put"),
  key: fc.constantFrom("a", "b"),
  client: fc.nat(1),
}) as fc.Arbitrary<Step>;

describe("the range cache", () => {
  it("answers serializable reads truly and after the proxy's own writes, whatever the interleaving", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 30 }), fc.integer(), async (steps, seed) => {
        const random = seededDelays(seed, 4);
        const etcd = new SlowEtcd(random);
        // The invalidation watch: every write's events, later than the writer hears back.
        const events = new AsyncQueue<WatchResponse>();
        etcd.onWrite = (revision, keys) =>
          void sleep(10 + random()).then(() =>
            events.push(
              create(WatchResponseSchema, {
                header: { revision },
                events: keys.map((k) => ({ type: Event_EventType.PUT, kv: { key: k, modRevision: revision } })),
              }),
            ),
          );
        const cache = new KvCache(
          {
            maxBytes: 1 << 20,
            maxEntries: 1000,
            ttlMs: 60_000,
            identity: ANONYMOUS,
            watchRetryMs: 1000,
            watchIdleMs: 60_000,
          },
          createMetrics().cache,
          () =>
            (async function* () {
              yield create(WatchResponseSchema, { created: true, header: { revision: etcd.revision } });
              yield* events;
            })(),
        );
        const kv = kvService(etcd, cache);
        // What each client saw last of each key, by revision, from its own acknowledged writes.
        const wrote = new Map<string, bigint>();
        try {
          const byClient = [0, 1].map((c) => steps.filter((s) => s.client === c));
          await Promise.all(
            byClient.map(async (mine) => {
              for (const s of mine) {
                if (s.kind === "put" || s.kind === "delete") {
                  const r =
                    s.kind === "put"
                      ? await kv.put(create(KV.method.put.input, { key: b(s.key), value: b(`${s.client}`) }), ctx)
                      : await kv.deleteRange(create(KV.method.deleteRange.input, { key: b(s.key) }), ctx);
                  const at = BigInt(r.header!.revision!);
                  if (at > (wrote.get(s.key) ?? 0n)) wrote.set(s.key, at);
                } else if (s.kind === "foreign put") {
                  await etcd.unary(KV.method.put, { key: b(s.key), value: b("elsewhere") }, ctx);
                } else {
                  const before = wrote.get(s.key) ?? 0n;
                  const current = etcd.revision;
                  const r = await kv.range(
                    create(KV.method.range.input, { key: b(s.key), serializable: s.kind === "serializable" }),
                    ctx,
                  );
                  const revision = BigInt(r.header!.revision!);
                  if (s.kind === "linearizable") {
                    assert.ok(revision >= current, `a linearizable read at ${revision}, sent at ${current}`);
                  }
                  assert.ok(revision >= before, `read ${s.key} at ${revision} after the proxy wrote it at ${before}`);
                  const truth = etcd.at(revision)!.get(s.key);
                  assert.deepEqual(
                    (r.kvs ?? []).map((k) => [Buffer.from(k.value!).toString(), k.modRevision]),
                    truth ? [[Buffer.from(truth.value).toString(), truth.modRevision]] : [],
                    `${s.key} at ${revision}`,
                  );
                }
              }
            }),
          );
        } finally {
          cache.close();
          events.end();
        }
      }),
      { numRuns: 60 },
    );
  });

  it("closes its watch of every write once it has held nothing for a while, and opens it again with the next entry", async () => {
    const opened: AbortSignal[] = [];
    const problems: string[] = [];
    const cache = new KvCache(
      {
        maxBytes: 1 << 20,
        maxEntries: 1000,
        ttlMs: 50,
        identity: ANONYMOUS,
        watchRetryMs: 60_000,
        watchIdleMs: 1_500,
        onWatchProblem: (reason) => problems.push(reason),
      },
      createMetrics().cache,
      (_requests, watchCtx) =>
        (async function* () {
          opened.push(watchCtx.signal);
          yield create(WatchResponseSchema, { created: true, header: { revision: 1n } });
          await new Promise((r) => watchCtx.signal.addEventListener("abort", r));
        })(),
    );
    const read = create(KV.method.range.input, { key: b("a"), serializable: true });
    const answer = toBinary(KV.method.range.output, create(KV.method.range.output, { header: { revision: 2n } }));
    try {
      await cache.range(read, ctx, async () => answer);
      await until(() => opened.length === 1);
      assert.equal(opened[0]!.aborted, false, "the watch is open while the cache holds the answer");
      // The entry expires (50 ms), and the first sweep (every second) 1.5 s after the read closes the watch.
      await until(() => opened[0]!.aborted, 5_000);
      await sleep(50);
      await cache.range(read, ctx, async () => answer);
      await until(() => opened.length === 2);
      assert.equal(opened[1]!.aborted, false, "the next entry opens it again, at once");
      // The entry expires before the next sweep (every second) sees it; the read that filled it was too recent to close.
      await sleep(1_100);
      assert.equal(opened[1]!.aborted, false, "a watch reopened by a read is not closed by the next sweep");
      assert.equal(opened.length, 2);
      assert.deepEqual(problems, [], "closing it for want of entries is no problem to report");
    } finally {
      cache.close();
    }
  });
});

async function until(done: () => boolean, withinMs = 2_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!done()) {
    assert.ok(Date.now() < deadline, "not within the bound");
    await sleep(10);
  }
}
