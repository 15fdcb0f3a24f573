// Watch events written in one pass are the bytes protobuf-es's toBinary
// writes for a WatchResponse's events, for any events at all.
import assert from "node:assert/strict";
import { it } from "node:test";
import fc from "fast-check";
import { create, toBinary } from "@bufbuild/protobuf";
import { WatchResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { EventSchema, KeyValueSchema, type Event } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { encodeEventsField, eventFieldSize } from "../../src/grpc/event-wire.js";
import { message } from "../helpers/arbitrary-message.js";

const events = fc.array(
  message(EventSchema).map((init) => create(EventSchema, init as never)),
  { maxLength: 4 },
);

const protobufEs = (list: Event[]) => toBinary(WatchResponseSchema, create(WatchResponseSchema, { events: list }));

it("writes the events field as toBinary does", () => {
  fc.assert(
    fc.property(events, (list) => {
      assert.deepEqual(new Uint8Array(encodeEventsField(list)!), protobufEs(list));
    }),
    { numRuns: 500 },
  );
});

it("sizes each event as toBinary writes it", () => {
  fc.assert(
    fc.property(events, (list) => {
      for (const event of list) assert.equal(eventFieldSize(event), protobufEs([event]).length);
    }),
  );
});

it("writes a 1 MiB value, lengths of several bytes and the largest revisions", () => {
  const kv = (value: Uint8Array) =>
    create(KeyValueSchema, {
      key: new Uint8Array(200).fill(107),
      createRevision: 2n ** 63n - 1n,
      modRevision: 1n << 53n,
      version: -1n,
      value,
      lease: 7n,
    });
  const list = [
    create(EventSchema, { type: 1, kv: kv(new Uint8Array(1 << 20).fill(118)), prevKv: kv(new Uint8Array(300)) }),
    create(EventSchema, { kv: kv(new Uint8Array()) }),
    create(EventSchema, { type: -5 as never }),
    create(EventSchema, {}),
  ];
  assert.deepEqual(new Uint8Array(encodeEventsField(list)!), protobufEs(list));
  assert.equal(encodeEventsField([])!.length, 0);
});

it("leaves events with unknown fields to toBinary", () => {
  const withUnknown = <T extends { $unknown?: unknown }>(message: T): T => {
    message.$unknown = [{ no: 9, wireType: 0, data: new Uint8Array([1]) }];
    return message;
  };
  for (const event of [
    withUnknown(create(EventSchema, { kv: create(KeyValueSchema, { key: new Uint8Array([1]) }) })),
    create(EventSchema, { kv: withUnknown(create(KeyValueSchema, { value: new Uint8Array([2]) })) }),
    create(EventSchema, { type: 1, prevKv: withUnknown(create(KeyValueSchema, {})) }),
  ]) {
    assert.equal(encodeEventsField([create(EventSchema, {}), event]), undefined);
    assert.equal(eventFieldSize(event), protobufEs([event]).length, "its size still counts what toBinary writes");
  }
});
