import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ResponseHeaderSchema, WatchResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { EventSchema, Event_EventType, KeyValueSchema, type Event } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { preEncodedFrame } from "../../src/grpc/pre-encoded.js";
import { frame } from "../../src/grpc/wire.js";
import { EventHistory } from "../../src/watch/event-history.js";
import { EventBatch, EventDelivery, fragmentResponse, watchResponse, type Variant } from "../../src/watch/responses.js";

const header = create(ResponseHeaderSchema, { clusterId: 7n, memberId: 8n, raftTerm: 2n, revision: 42n });

function event(rev: bigint, type = Event_EventType.PUT, size = 3): Event {
  return create(EventSchema, {
    type,
    kv: create(KeyValueSchema, { key: Buffer.from("k"), value: Buffer.alloc(size, "v"), modRevision: rev }),
    prevKv: create(KeyValueSchema, { key: Buffer.from("k"), value: Buffer.from("old") }),
  });
}

const all = { prevKv: true, noPut: false, noDelete: false };

/** A pre-encoded frame's bytes, whether one buffer or pieces. */
const frameBytes = (f: Uint8Array | readonly Uint8Array[]) => Buffer.concat(f instanceof Uint8Array ? [f] : [...f]);

describe("watch responses", () => {
  it("a pre-encoded frame equals the generic encoding, for any watch ID", () => {
    const delivery = new EventDelivery(header, [event(41n), event(42n, Event_EventType.DELETE)]);
    for (const id of [0n, 1n, 127n, 128n, 300n, 2n ** 40n]) {
      for (const filter of [
        all,
        { prevKv: false, noPut: false, noDelete: false },
        { prevKv: false, noPut: true, noDelete: false },
      ]) {
        const response = delivery.variantFor(filter, 0n).responseFor(id);
        assert.deepEqual(
          frameBytes(preEncodedFrame(response)!),
          frame(toBinary(WatchResponseSchema, response)),
          `id ${id}`,
        );
      }
    }
  });

  it("a large event's frame is pieces: each receiver's own head, then the encoded events every receiver shares", () => {
    const variant = new EventDelivery(header, [event(41n, Event_EventType.PUT, 1 << 20)]).variantFor(all, 0n);
    const [a, b] = [1n, 300n].map((id) => preEncodedFrame(variant.responseFor(id))!) as [Uint8Array[], Uint8Array[]];
    assert.ok(Array.isArray(a) && Array.isArray(b));
    assert.equal(a[1], b[1], "one encoding of the events, sent to both");
    for (const [id, pieces] of [
      [1n, a],
      [300n, b],
    ] as const) {
      assert.deepEqual(frameBytes(pieces), frame(toBinary(WatchResponseSchema, variant.responseFor(id))), `id ${id}`);
    }
  });

  it("a batch of unread deliveries is one response: the newest header, every event in order, encoded as protobuf would", () => {
    const first = new EventDelivery(header, [event(41n)]).variantFor(all, 0n);
    const later = [43n, 44n].map(
      (rev) => new EventDelivery({ ...header, revision: rev }, [event(rev, Event_EventType.DELETE, 200)]),
    );
    const [second, third] = later.map((d) => d.variantFor(all, 0n)) as [Variant, Variant];
    for (const id of [0n, 5n, 300n]) {
      const batch = new EventBatch(id, first, second);
      batch.add(third);
      batch.seal();
      assert.equal(batch.bytes, first.bytes + second.bytes + third.bytes);
      assert.deepEqual(
        batch.events.map((e) => e.kv!.modRevision),
        [41n, 43n, 44n],
      );
      assert.equal(batch.header.revision, 44n);
      assert.deepEqual(frameBytes(preEncodedFrame(batch)!), frame(toBinary(WatchResponseSchema, batch)), `id ${id}`);
      const plain = watchResponse({
        header: third.header,
        watchId: id,
        events: [...first.events, ...second.events, ...third.events],
      });
      assert.deepEqual(
        toJson(WatchResponseSchema, batch),
        toJson(WatchResponseSchema, plain),
        "as JSON (the Connect lane)",
      );
    }
    assert.equal(first.events.length, 1, "the delivery's own events, shared by other receivers, are untouched");
  });

  it("batches that fall behind alike share their run of variants, and part ways without touching each other", () => {
    const [a, b, c, d] = [41n, 42n, 43n, 44n].map((rev) =>
      new EventDelivery({ ...header, revision: rev }, [event(rev)]).variantFor(all, 0n),
    ) as [Variant, Variant, Variant, Variant];
    const one = new EventBatch(1n, a, b);
    const two = new EventBatch(2n, a, b, one.sharedRun);
    assert.equal(two.sharedRun, one.sharedRun);
    one.add(c);
    two.add(c);
    assert.equal(two.sharedRun, one.sharedRun, "the same turn keeps them on one run");
    const three = new EventBatch(3n, a, b, one.sharedRun);
    three.add(d); // takes another turn after b
    one.add(d);
    const revisions = (batch: EventBatch) => batch.events.map((e) => e.kv!.modRevision);
    assert.deepEqual(revisions(one), [41n, 42n, 43n, 44n]);
    assert.deepEqual(revisions(two), [41n, 42n, 43n]);
    assert.deepEqual(revisions(three), [41n, 42n, 44n]);
    assert.equal(
      new EventBatch(4n, b, c, one.sharedRun).sharedRun === one.sharedRun,
      false,
      "only a run that starts alike is shared",
    );
    for (const batch of [one, two, three]) {
      batch.seal();
      assert.deepEqual(frameBytes(preEncodedFrame(batch)!), frame(toBinary(WatchResponseSchema, batch)));
    }
  });

  it("variants filter, strip prev_kv and cut at the watcher's next revision", () => {
    const delivery = new EventDelivery(header, [event(40n), event(41n, Event_EventType.DELETE), event(42n)]);
    const noPut = delivery.variantFor({ prevKv: false, noPut: true, noDelete: false }, 0n);
    assert.deepEqual(
      noPut.events.map((e) => [e.kv!.modRevision, e.prevKv]),
      [[41n, undefined]],
    );
    const late = delivery.variantFor(all, 41n);
    assert.deepEqual(
      late.events.map((e) => e.kv!.modRevision),
      [41n, 42n],
    );
    assert.equal(late.events[0]!.prevKv!.value.toString(), "old");
    assert.equal(delivery.variantFor(all, 0n), delivery.variantFor(all, 0n), "shared variants are built once");
    assert.equal(late, delivery.variantFor(all, 41n), "so are those of receivers that start mid-delivery");
    assert.notEqual(late, delivery.variantFor({ ...all, prevKv: false }, 41n), "per filter");
  });

  it("fragments as etcd does: only at the limit, never below two events, the last piece unmarked", () => {
    const events = [1n, 2n, 3n, 4n, 5n].map((r) => event(r, Event_EventType.PUT, 1000));
    const whole = watchResponse({ header, watchId: 3n, events });
    assert.deepEqual(fragmentResponse(whole, 100_000), [whole]);
    assert.deepEqual(fragmentResponse(watchResponse({ header, events: events.slice(0, 1) }), 10), [
      watchResponse({ header, events: events.slice(0, 1) }),
    ]);
    const pieces = fragmentResponse(whole, 2500);
    assert.deepEqual(
      pieces.map((p) => p.events.length),
      [2, 2, 1],
    );
    assert.deepEqual(
      pieces.map((p) => p.fragment),
      [true, true, false],
    );
    for (const p of pieces) {
      assert.equal(p.watchId, 3n);
      assert.equal(preEncodedFrame(p), undefined, "pieces carry no stale pre-encoding");
      assert.ok(p.events.length === 1 || toBinary(WatchResponseSchema, p).length < 2500);
    }
    assert.deepEqual(
      fromBinary(WatchResponseSchema, toBinary(WatchResponseSchema, pieces[2]!)).events[0]!.kv!.modRevision,
      5n,
    );
  });
});

describe("event history", () => {
  it("covers from its start, drops the oldest revisions past its limits and says from where it is complete", () => {
    const history = new EventHistory({ maxEntries: 3, maxBytes: 1 << 20, replayBatchBytes: 1 << 16 });
    assert.equal(history.covers(10n), false);
    history.startAt(10n);
    for (const r of [10n, 12n, 15n]) history.append(new EventDelivery(header, [event(r)]));
    assert.equal(history.covers(10n), true);
    assert.deepEqual(
      history.since(11n).map((e) => e.revision),
      [12n, 15n],
    );
    history.append(new EventDelivery(header, [event(16n), event(16n)]));
    assert.equal(history.from, 11n, "complete from just after the dropped revision");
    assert.equal(history.covers(10n), false);
    assert.deepEqual(
      history.since(0n).map((e) => e.revision),
      [12n, 15n, 16n],
    );
  });

  it("keeps within its byte budget", () => {
    const history = new EventHistory({ maxEntries: 1000, maxBytes: 5000, replayBatchBytes: 1 << 16 });
    history.startAt(1n);
    for (let r = 1n; r <= 20n; r++) history.append(new EventDelivery(header, [event(r, Event_EventType.PUT, 1000)]));
    const kept = history.since(0n);
    assert.ok(kept.length <= 4 && kept.length > 0);
    assert.equal(history.from, kept[0]!.revision);
  });

  it("replays merge entries into few deliveries, shared by receivers that ask for the same revision", () => {
    // Each event weighs 56 bytes as eventBytes counts: two fit in a 120-byte batch.
    const history = new EventHistory({ maxEntries: 10, maxBytes: 1 << 20, replayBatchBytes: 120 });
    history.startAt(10n);
    const last = new EventDelivery({ ...header, revision: 17n }, [event(16n), event(17n)]);
    for (const d of [10n, 12n, 15n].map((r) => new EventDelivery({ ...header, revision: r }, [event(r)]))) {
      history.append(d);
    }
    history.append(last);
    const catchUp = history.catchUp(11n);
    assert.equal(catchUp.entries, 3);
    assert.deepEqual(
      catchUp.deliveries.map((d) => d.events.map((e) => e.kv!.modRevision)),
      [
        [12n, 15n],
        [16n, 17n],
      ],
    );
    assert.equal(catchUp.deliveries[0]!.header.revision, 15n, "a merged delivery carries its newest header");
    assert.equal(catchUp.deliveries[1], last, "an entry replayed alone is its own delivery, encodings and all");
    assert.equal(history.catchUp(11n), catchUp, "built once for every receiver rejoining from 11");
    history.append(new EventDelivery({ ...header, revision: 18n }, [event(18n)]));
    assert.deepEqual(
      history.catchUp(11n).deliveries.map((d) => d.lastRevision),
      [15n, 17n, 18n],
      "and afresh once the history has grown",
    );
  });
});
