// A model test of watch coalescing: random interleavings of streams,
// creates, cancels, puts, progress requests and upstream failovers against
// an in-memory etcd watch (a fake, as pure-logic unit tests may use). Every
// client watcher must get exactly one Created and then every event of its
// key from its start revision on, once each, in order, whether its client
// reads at once or pauses (and gets its backlog batched).
//
// Like etcd, the fake catches up a watcher created from the past later, in
// a sync pass, and answers a progress request either at once with its
// current revision (etcd 3.4, even while a watcher is still catching up, and
// ahead of events it already owes synced watchers, as 3.4.23 does) or only
// once every watcher of the stream is synced (etcd 3.5). It compacts
// too: its sync pass cancels a watcher from before the compacted revision,
// and a Range at such a revision (the proxy's join check) says so. A
// watcher asked for from a revision compacted before it asked must get
// etcd's cancel with compact_revision, never events from history.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { seededRandom } from "../helpers/random.js";
import type { CallContext } from "../../src/call-context.js";
import {
  ResponseHeaderSchema,
  WatchRequestSchema,
  WatchResponseSchema,
  type WatchRequest,
  type WatchResponse,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { EventSchema, Event_EventType, KeyValueSchema } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { createMetrics } from "../../src/metrics.js";
import { upstreamFailure } from "../../src/upstream/errors.js";
import { AsyncQueue } from "../../src/util/async-queue.js";
import type { WatchUpstream } from "../../src/watch/watch-channel.js";
import { WatchHub } from "../../src/watch/watch-hub.js";

const KEYS = ["a", "b"];

/** etcd's watch, in memory: one revision per put, watchers per upstream stream. */
type EtcdLine = "3.4" | "3.5";

class FakeEtcd {
  revision = 1n;
  compactRevision = 0n;
  readonly log: Array<{ rev: bigint; key: string; value: string }> = [];
  private readonly streams = new Set<FakeStream>();

  constructor(readonly line: EtcdLine) {}

  readonly upstream: WatchUpstream = (requests, ctx) => {
    const stream = new FakeStream(this, ctx);
    this.streams.add(stream);
    void stream.serve(requests as AsyncIterable<never>).finally(() => this.streams.delete(stream));
    return stream.out;
  };

  put(key: string): bigint {
    const rev = ++this.revision;
    this.log.push({ rev, key, value: `v${rev}` });
    for (const s of this.streams) s.notify(rev);
    return rev;
  }

  compact(revision: bigint): void {
    if (revision > this.compactRevision) this.compactRevision = revision;
  }

  /** The proxy's join check, as etcd answers its Range at `startRevision`. */
  readonly checkJoin = async (_key: Uint8Array, _end: Uint8Array, startRevision: bigint) =>
    startRevision !== 0n && startRevision < this.compactRevision ? { kind: "own" as const } : { kind: "join" as const };

  /** etcd's sync pass: watchers created from the past get their catch-up and become synced. */
  sync(): void {
    for (const s of this.streams) s.sync();
  }

  /** Every open upstream stream dies as if its endpoint went away. */
  failover(): void {
    for (const s of this.streams) s.die();
  }

  header(revision = this.revision) {
    return create(ResponseHeaderSchema, { clusterId: 1n, memberId: 1n, raftTerm: 1n, revision });
  }

  eventsFor(key: string, from: bigint, to: bigint) {
    return this.log.filter((e) => e.key === key && e.rev >= from && e.rev <= to);
  }
}

class FakeStream {
  readonly out = new AsyncQueue<WatchResponse>();
  private readonly watchers = new Map<bigint, { key: string; next: bigint; synced: boolean }>();
  /** A progress request waits for every watcher to be synced (etcd 3.5). */
  private progressDeferred = false;
  /**
   * etcd 3.4 before 3.4.25: events for synced watchers wait in their
   * channel, and a progress answer (sent on another) may overtake them
   * (etcd issue 15220); the sync pass sends them.
   */
  private owed: WatchResponse[] = [];

  constructor(
    private readonly etcd: FakeEtcd,
    ctx: CallContext,
  ) {
    ctx.signal.addEventListener("abort", () => this.out.fail(new ConnectError("canceled", Code.Canceled)));
  }

  async serve(requests: AsyncIterable<WatchRequest>): Promise<void> {
    try {
      for await (const req of requests) {
        const r = req.requestUnion;
        if (r.case === "createRequest") {
          const key = Buffer.from(r.value.key).toString();
          const id = r.value.watchId;
          const next = r.value.startRevision === 0n ? this.etcd.revision + 1n : r.value.startRevision;
          this.out.push(create(WatchResponseSchema, { header: this.etcd.header(), watchId: id, created: true }));
          // From the past: unsynced, caught up by a later sync pass.
          this.watchers.set(id, { key, next, synced: next > this.etcd.revision });
        } else if (r.case === "cancelRequest") {
          if (this.watchers.delete(r.value.watchId)) {
            this.out.push(
              create(WatchResponseSchema, { header: this.etcd.header(), watchId: r.value.watchId, canceled: true }),
            );
          }
        } else if (r.case === "progressRequest" && this.watchers.size > 0) {
          if (this.etcd.line === "3.4" || this.allSynced()) this.answerProgress();
          else this.progressDeferred = true;
        }
      }
    } catch {
      // the proxy ended the stream
    }
  }

  notify(rev: bigint): void {
    for (const [id, w] of this.watchers) {
      if (!w.synced) continue; // its sync pass will bring this event too
      const events = this.etcd.eventsFor(w.key, rev, rev);
      if (events.length > 0) {
        if (this.etcd.line === "3.4") this.owed.push(this.response(id, events));
        else this.out.push(this.response(id, events));
      }
      w.next = rev + 1n;
    }
  }

  sync(): void {
    for (const response of this.owed.splice(0)) if (this.watchers.has(response.watchId)) this.out.push(response);
    for (const [id, w] of this.watchers) {
      if (w.synced) continue;
      if (w.next < this.etcd.compactRevision) {
        this.watchers.delete(id);
        this.out.push(
          create(WatchResponseSchema, {
            header: this.etcd.header(),
            watchId: id,
            canceled: true,
            compactRevision: this.etcd.compactRevision,
          }),
        );
        continue;
      }
      const backlog = this.etcd.eventsFor(w.key, w.next, this.etcd.revision);
      if (backlog.length > 0) this.out.push(this.response(id, backlog));
      w.next = this.etcd.revision + 1n;
      w.synced = true;
    }
    if (this.progressDeferred && this.allSynced()) this.answerProgress();
  }

  private allSynced(): boolean {
    for (const w of this.watchers.values()) if (!w.synced) return false;
    return true;
  }

  private answerProgress(): void {
    this.progressDeferred = false;
    this.out.push(create(WatchResponseSchema, { header: this.etcd.header(), watchId: -1n }));
  }

  die(): void {
    // What the proxy's HTTP/2 client reports for a connection lost under a call.
    this.out.fail(upstreamFailure("connection-lost", "error reading from server: EOF", new Error("read ECONNRESET")));
  }

  private response(watchId: bigint, events: Array<{ rev: bigint; key: string; value: string }>): WatchResponse {
    return create(WatchResponseSchema, {
      header: this.etcd.header(),
      watchId,
      events: events.map((e) =>
        create(EventSchema, {
          type: Event_EventType.PUT,
          kv: create(KeyValueSchema, { key: Buffer.from(e.key), value: Buffer.from(e.value), modRevision: e.rev }),
          prevKv: create(KeyValueSchema, { key: Buffer.from(e.key), value: Buffer.from("prev") }),
        }),
      ),
    });
  }
}

interface ClientStream {
  requests: AsyncQueue<WatchRequest>;
  abort: AbortController;
  replies: WatchResponse[];
  /** What each create asked for, in order, and etcd's compacted revision when it asked. */
  creates: Array<{ key: string; start: bigint; compactedBefore: bigint }>;
  /** A paused client reads nothing; its watchers' unread events pile up (and get batched). */
  paused: boolean;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/** Runs one random history and checks it; says how many progress answers and batched responses it checked. */
async function runModel(seed: number): Promise<{ progressAnswers: number; batched: number; compacted: number }> {
  const random = seededRandom(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  const etcd = new FakeEtcd(seed % 2 === 1 ? "3.4" : "3.5");
  for (let i = 0; i < 5; i++) etcd.put(pick(KEYS));
  const metrics = createMetrics();
  const hub = new WatchHub(
    etcd.upstream,
    etcd.checkJoin,
    {
      bufferBytes: 1 << 30,
      batchBytes: 64 << 10,
      fragmentBytes: 1 << 30,
      history: { maxEntries: 4, maxBytes: 1 << 20, replayBatchBytes: 150 },
      reconnectMinMs: 1,
      reconnectMaxMs: 5,
      progressRetryMs: 10,
      // The 3.5 model answers progress in order with owed events; the 3.4 one may overtake them.
      progressOrdered: () => etcd.line === "3.5",
    },
    metrics.watch,
  );
  const streams: ClientStream[] = [];
  const open = () => {
    const s: ClientStream = {
      requests: new AsyncQueue(),
      abort: new AbortController(),
      replies: [],
      creates: [],
      paused: false,
    };
    const ctx: CallContext = { forwardHeaders: {}, deadline: undefined, signal: s.abort.signal };
    void (async () => {
      for await (const r of hub.serve(s.requests, ctx)) {
        s.replies.push(r);
        while (s.paused) await tick();
      }
    })();
    streams.push(s);
  };
  open();

  for (let step = 0; step < 300; step++) {
    const roll = random();
    if (roll < 0.05 && streams.length < 6) open();
    else if (roll < 0.35) {
      const s = pick(streams);
      const key = pick(KEYS);
      const kind = random();
      const start =
        kind < 0.5 ? 0n : kind < 0.85 ? BigInt(1 + Math.floor(random() * Number(etcd.revision))) : etcd.revision + 2n;
      s.creates.push({ key, start, compactedBefore: etcd.compactRevision });
      s.requests.push(
        create(WatchRequestSchema, {
          requestUnion: { case: "createRequest", value: { key: Buffer.from(key), startRevision: start } },
        }),
      );
    } else if (roll < 0.42) {
      const s = pick(streams);
      const ids = s.replies.filter((r) => r.created && !r.canceled).map((r) => r.watchId);
      if (ids.length > 0)
        s.requests.push(
          create(WatchRequestSchema, { requestUnion: { case: "cancelRequest", value: { watchId: pick(ids) } } }),
        );
    } else if (roll < 0.47) {
      pick(streams).requests.push(create(WatchRequestSchema, { requestUnion: { case: "progressRequest", value: {} } }));
    } else if (roll < 0.55) etcd.sync();
    else if (roll < 0.58) etcd.compact(etcd.revision - BigInt(Math.floor(random() * 4)));
    else if (roll < 0.9) etcd.put(pick(KEYS));
    else if (roll < 0.95) etcd.failover();
    else pick(streams).paused = random() < 0.5;
    const ticks = Math.floor(random() * 4);
    for (let t = 0; t < ticks; t++) await tick();
  }
  for (const s of streams) s.paused = false;
  // Settle: every create answered, then one more put per key must reach every open watcher.
  await waitFor(
    () => streams.every((s) => s.replies.filter((r) => r.created).length === s.creates.length),
    "every Created",
    etcd,
  );
  // Watchers that start in the future need etcd to get there first.
  const furthest = streams.flatMap((s) => s.creates.map((c) => c.start)).reduce((a, b) => (a > b ? a : b), 0n);
  while (etcd.revision < furthest) etcd.put(pick(KEYS));
  const finals = new Map(KEYS.map((k) => [k, etcd.put(k)]));
  const open_ = () =>
    streams.flatMap((s) => {
      const canceled = new Set(s.replies.filter((r) => r.canceled).map((r) => r.watchId));
      return s.replies.filter((r) => r.created && !canceled.has(r.watchId)).map((r) => ({ s, id: r.watchId }));
    });
  const lastRev = (s: ClientStream, id: bigint) =>
    s.replies
      .filter((r) => r.watchId === id)
      .flatMap((r) => r.events.map((e) => e.kv!.modRevision))
      .at(-1);
  await waitFor(
    () => {
      return open_().every(({ s, id }) => {
        const key = keyOf(s, id);
        return lastRev(s, id) === finals.get(key);
      });
    },
    "the final puts at every open watcher",
    etcd,
  );
  // Progress is still answered at the end, on every stream with watchers: on the 3.4 model only once
  // a second answer confirms the first, and never behind an event the stream was sent.
  const answersBefore = streams.map((s) => s.replies.filter((r) => r.watchId === -1n && !r.created).length);
  const watching = streams.filter((s) => open_().some((o) => o.s === s));
  for (const s of watching)
    s.requests.push(create(WatchRequestSchema, { requestUnion: { case: "progressRequest", value: {} } }));
  await waitFor(
    () =>
      watching.every(
        (s) => s.replies.filter((r) => r.watchId === -1n && !r.created).length > answersBefore[streams.indexOf(s)]!,
      ),
    "a final progress answer on every stream with watchers",
    etcd,
  );

  for (const s of streams) {
    const createdReplies = s.replies.filter((r) => r.created);
    createdReplies.forEach((created, i) => {
      const { key, start } = s.creates[i]!;
      const id = created.watchId;
      assert.equal(
        s.replies.filter((r) => r.watchId === id && r.created).length,
        1,
        `seed ${seed}: one Created for ${id}`,
      );
      const got = s.replies.filter((r) => r.watchId === id).flatMap((r) => r.events.map((e) => e.kv!.modRevision));
      const from = start === 0n ? created.header!.revision + 1n : start;
      const compacted = s.replies.find((r) => r.watchId === id && r.canceled && r.compactRevision > 0n);
      if (start !== 0n && start < s.creates[i]!.compactedBefore) {
        // etcd's cancel, unless the client cancelled it first.
        const canceled = s.replies.some((r) => r.watchId === id && r.canceled);
        assert.ok(canceled, `seed ${seed}: watcher ${id} from compacted ${start} is cancelled`);
        assert.deepEqual(got, [], `seed ${seed}: watcher ${id} from compacted ${start} gets no events`);
      }
      if (compacted) {
        assert.ok(
          from < compacted.compactRevision,
          `seed ${seed}: watcher ${id} from ${from} cancelled for compaction`,
        );
      }
      if (got.length === 0) return;
      const expected = etcd.eventsFor(key, from, got.at(-1)!).map((e) => e.rev);
      assert.deepEqual(got, expected, `seed ${seed}: watcher ${id} on ${key} from ${from}`);
    });
  }
  // On etcd 3.5, a progress answer promises every event up to its revision
  // was sent before it; etcd 3.4 may answer while a watcher catches up.
  for (const s of etcd.line === "3.5" ? streams : []) {
    s.replies.forEach((reply, at) => {
      if (reply.watchId !== -1n || reply.created) return;
      const before = s.replies.slice(0, at);
      const canceled = new Set(before.filter((r) => r.canceled).map((r) => r.watchId));
      before
        .filter((r) => r.created && !canceled.has(r.watchId))
        .forEach((created) => {
          const i = s.replies.filter((r) => r.created).indexOf(created);
          const { key, start } = s.creates[i]!;
          const from = start === 0n ? created.header!.revision + 1n : start;
          const owed = etcd.eventsFor(key, from, reply.header!.revision).map((e) => e.rev);
          const sent = before
            .filter((r) => r.watchId === created.watchId)
            .flatMap((r) => r.events.map((e) => e.kv!.modRevision))
            .filter((rev) => rev <= reply.header!.revision); // later ones may come first too
          assert.deepEqual(
            sent,
            owed,
            `seed ${seed}: progress at ${reply.header!.revision} before all of ${created.watchId}'s events`,
          );
        });
    });
  }
  for (const s of streams) s.abort.abort();
  hub.close();
  const replies = streams.flatMap((s) => s.replies);
  return {
    progressAnswers: replies.filter((r) => r.watchId === -1n && !r.created).length,
    batched: replies.filter((r) => new Set(r.events.map((e) => e.kv!.modRevision)).size > 1).length,
    compacted: replies.filter((r) => r.canceled && r.compactRevision > 0n).length,
  };

  function keyOf(s: ClientStream, id: bigint): string {
    const index = s.replies.filter((r) => r.created).findIndex((r) => r.watchId === id);
    return s.creates[index]!.key;
  }
}

async function waitFor(check: () => boolean, what: string, etcd?: FakeEtcd): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (check()) return;
    etcd?.sync(); // etcd's sync loop runs on
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`model: timed out waiting for ${what}`);
}

describe("watch coalescing model", () => {
  let batched = 0;
  let compacted = 0;
  for (const seed of Array.from({ length: Number(process.env.MODEL_SEEDS ?? 12) }, (_, i) => i + 1)) {
    it(`seed ${seed}: ordered, unique, gap-free delivery through creates, cancels, puts, failovers and paused clients`, async () => {
      const run = await runModel(seed);
      assert.ok(run.progressAnswers > 0, "the history exercised progress requests");
      batched += run.batched;
      compacted += run.compacted;
    });
  }
  it("watchers from compacted revisions were cancelled with etcd's compact_revision", () => {
    assert.ok(compacted > 0, "some watcher got a compaction cancel");
  });
  it("paused clients had their watchers' unread events batched", () => {
    assert.ok(batched > 0, "some response carried the events of more than one revision");
  });
});
