// A watch from a compacted revision is cancelled with etcd's compact_revision,
// whichever way the proxy would otherwise serve it: from a live shared
// watch's history, by a merge into one, or on an upstream watch of its own.
// A watch from a revision just past the compaction is still served from
// history. Every answer is compared with etcd's own, on the same cluster.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_VERSION } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import type { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { WatchStream, revisions, type WatchReply } from "../helpers/watch.js";

/** The three shapes of a watch: whole keyspace, a prefix, one key. */
const SHAPES = [
  { name: "whole keyspace", key: "\0", range_end: "\0", put: (i: number) => `any/${i % 3}` },
  { name: "prefix", key: "p/", range_end: "p0", put: (i: number) => `p/${i % 3}` },
  { name: "single key", key: "one", range_end: undefined, put: () => "one" },
] as const;

/** What a client sees of a watch it asked for: its Created, then a cancel or the events' revisions. */
function summary(replies: WatchReply[]) {
  const cancel = replies.find((r) => r.canceled);
  return {
    created: replies[0]?.created === true,
    canceled: cancel !== undefined,
    compactRevision: cancel ? Number(cancel.compact_revision) : 0,
    events: revisions(replies),
  };
}

/** Watches from `start` and takes replies until a cancel, or until `events` events arrived. */
async function watchFrom(
  client: EtcdGrpcClient,
  shape: (typeof SHAPES)[number],
  start: number,
  events: number,
): Promise<ReturnType<typeof summary>> {
  const stream = new WatchStream(client);
  try {
    stream.create({ key: shape.key, range_end: shape.range_end, start_revision: start });
    const taken = await stream.until((got) => got.some((r) => r.canceled) || revisions(got).length >= events, 10_000);
    return summary(taken);
  } finally {
    stream.close();
  }
}

describe(`a watch from a compacted revision (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1);

  const revision = async () =>
    Number(((await f.direct.unary("KV", "Range", { key: Buffer.from("x") })) as any).header.revision);
  const putTen = async (shape: (typeof SHAPES)[number]) => {
    for (let i = 0; i < 10; i++)
      await f.direct.unary("KV", "Put", { key: Buffer.from(shape.put(i)), value: Buffer.from(`v${i}`) });
  };

  for (const shape of SHAPES) {
    it(`${shape.name}: joining a live shared watch (its history) gets etcd's cancel`, async () => {
      const live = new WatchStream(f.client);
      try {
        live.create({ key: shape.key, range_end: shape.range_end });
        assert.equal((await live.next()).created, true);
        await putTen(shape);
        await live.until((got) => revisions(got).length >= 10);
        const now = await revision();
        await f.direct.unary("KV", "Compact", { revision: now - 2, physical: true });
        const direct = await watchFrom(f.direct, shape, now - 3, 3);
        const proxied = await watchFrom(f.client, shape, now - 3, 3);
        assert.deepEqual(proxied, direct);
        assert.deepEqual(direct, { created: true, canceled: true, compactRevision: now - 2, events: [] });
        // Past the compacted revision, history still serves it, as etcd would.
        const fromKept = await watchFrom(f.client, shape, now - 1, 2);
        assert.deepEqual(fromKept, await watchFrom(f.direct, shape, now - 1, 2));
        assert.equal(fromKept.canceled, false);
      } finally {
        live.close();
      }
    });

    it(`${shape.name}: a shared watch catching up from the past does not take in a compacted joiner`, async () => {
      const first = await revision();
      await putTen(shape);
      // One watcher from before the puts: its own upstream watch, with history from `first`.
      const early = new WatchStream(f.client);
      try {
        early.create({ key: shape.key, range_end: shape.range_end, start_revision: first });
        await early.until((got) => revisions(got).length >= 10);
        await putTen(shape);
        const now = await revision();
        await f.direct.unary("KV", "Compact", { revision: now - 2, physical: true });
        // A joiner from `first + 5` (history covers it) and one from now - 3.
        for (const start of [first + 5, now - 3]) {
          const proxied = await watchFrom(f.client, shape, start, 3);
          assert.deepEqual(proxied, await watchFrom(f.direct, shape, start, 3));
          assert.equal(proxied.compactRevision, now - 2);
        }
      } finally {
        early.close();
      }
    });

    it(`${shape.name}: with no shared watch to join, etcd's own cancel comes through`, async () => {
      await putTen(shape);
      const now = await revision();
      await f.direct.unary("KV", "Compact", { revision: now - 2, physical: true });
      const proxied = await watchFrom(f.client, shape, now - 5, 3);
      assert.deepEqual(proxied, await watchFrom(f.direct, shape, now - 5, 3));
      assert.equal(proxied.compactRevision, now - 2);
    });
  }

  it("a watcher from after the compaction joins a shared watch that stands before it, and gets its events", async () => {
    const shape = SHAPES[1];
    // A watch on a quiet range stands at its creation revision...
    const quiet = new WatchStream(f.client);
    const later = new WatchStream(f.client);
    try {
      quiet.create({ key: shape.key, range_end: shape.range_end, start_revision: (await revision()) - 1 });
      assert.equal((await quiet.next()).created, true);
      // ...while the store moves on and is compacted; a later watcher from past the compaction joins.
      for (let i = 0; i < 10; i++)
        await f.direct.unary("KV", "Put", { key: Buffer.from(`elsewhere/${i}`), value: Buffer.from("v") });
      const now = await revision();
      await f.direct.unary("KV", "Compact", { revision: now - 2, physical: true });
      later.create({ key: shape.key, range_end: shape.range_end, start_revision: now });
      assert.equal((await later.next()).created, true);
      await f.direct.unary("KV", "Put", { key: Buffer.from("p/after"), value: Buffer.from("v") });
      const got = await later.until((replies) => revisions(replies).length >= 1 || replies.some((r) => r.canceled));
      assert.deepEqual(revisions(got), [now + 1]);
      assert.ok(!got.some((r) => r.canceled));
    } finally {
      quiet.close();
      later.close();
    }
  });
});
