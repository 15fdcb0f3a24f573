// The binary-to-JSON transcoder writes exactly what decoding and
// toJson + JSON.stringify write, for every answer message of every service,
// or answers undefined and leaves it to them.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { create, fromBinary, ScalarType, toBinary, toJson, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { binaryToJson, jsonOfBinary, jsonOfMessage, type JsonNames } from "../../src/grpc/json-transcoder.js";
import {
  RangeResponseSchema,
  TxnResponseSchema,
  WatchCreateRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { message } from "../helpers/arbitrary-message.js";
import { SERVICES } from "../helpers/services.js";

const ANSWERS = [...new Set(SERVICES.flatMap((s) => s.methods.map((m) => m.output)))];
/** Requests too: WatchCreateRequest has the one packed list (its filters). */
const MESSAGES = [...new Set([...ANSWERS, ...SERVICES.flatMap((s) => s.methods.map((m) => m.input))])];
const NAMINGS: JsonNames[] = [{ useProtoFieldName: true }, { useProtoFieldName: false }];

/** What the generic path writes, or the error it throws. */
function generic(schema: DescMessage, bytes: Uint8Array, names: JsonNames): string | Error {
  try {
    return JSON.stringify(toJson(schema, fromBinary(schema, bytes), names));
  } catch (err) {
    return err as Error;
  }
}

function assertSame(schema: DescMessage, bytes: Uint8Array, names: JsonNames): "fast" | "generic" {
  const fast = binaryToJson(schema, bytes, names);
  if (fast === undefined) return "generic";
  assert.equal(fast.toString("utf8"), generic(schema, bytes, names), `${schema.typeName}`);
  return "fast";
}

/** A message's encoding, then each element kept whole, as it goes on the wire. */
function encode(schema: DescMessage, init: Record<string, unknown>): Uint8Array {
  return toBinary(schema, create(schema, init as never));
}

describe("binary-to-JSON transcoder", () => {
  for (const names of NAMINGS) {
    it(`writes every message as toJson + JSON.stringify do (${names.useProtoFieldName ? "proto" : "JSON"} names)`, () => {
      let fast = 0;
      for (const schema of MESSAGES) {
        fc.assert(
          fc.property(message(schema), (init) => {
            if (assertSame(schema, encode(schema, init), names) === "fast") fast++;
          }),
          { numRuns: 60 },
        );
      }
      // Nearly every well-formed answer takes the fast path (a string opening with a BOM does not).
      assert.ok(fast > MESSAGES.length * 60 * 0.8, `only ${fast} of ${MESSAGES.length * 60} took the fast path`);
    });
  }

  it("writes a message held decoded as toJson + JSON.stringify do, through its encoding", () => {
    for (const names of NAMINGS) {
      for (const schema of MESSAGES) {
        fc.assert(
          fc.property(message(schema), (init) => {
            const decoded = create(schema, init as never);
            const want = JSON.stringify(toJson(schema, decoded, names));
            assert.equal(jsonOfMessage(schema, decoded, names).toString(), want, schema.typeName);
          }),
          { numRuns: 30 },
        );
      }
    }
  });

  it("on any bytes at all, writes what the generic path writes or leaves it to that path", () => {
    fc.assert(
      fc.property(fc.constantFrom(...MESSAGES), fc.uint8Array({ maxLength: 64 }), (schema, wire) => {
        for (const names of NAMINGS) {
          const fast = binaryToJson(schema, wire, names);
          if (fast !== undefined) assert.equal(fast.toString(), generic(schema, wire, names));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("on an encoding with some bytes changed, the same", () => {
    fc.assert(
      fc.property(
        message(RangeResponseSchema),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
        (init, changes) => {
          const wire = Uint8Array.from(encode(RangeResponseSchema, init));
          if (wire.length === 0) return;
          for (const [at, value] of changes) wire[at % wire.length] = value;
          for (const names of NAMINGS) {
            const fast = binaryToJson(RangeResponseSchema, wire, names);
            if (fast !== undefined) assert.equal(fast.toString(), generic(RangeResponseSchema, wire, names));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("leaves to the generic path what it would have to merge or reorder", () => {
    const kv = (key: string, version: bigint) =>
      toBinary(KeyValueSchema, create(KeyValueSchema, { key: Buffer.from(key), version }));
    const field = (number: number, payload: Uint8Array) =>
      Buffer.concat([Buffer.from([(number << 3) | 2, payload.length]), payload]);
    const header = Buffer.from([0x0a, 0x02, 0x10, 0x05]); // header { member_id: 5 }
    const cases: Array<[string, Uint8Array]> = [
      // kvs (2) before header (1)
      ["fields out of order", Buffer.concat([field(2, kv("a", 1n)), header])],
      ["a singular message twice (protobuf merges them)", Buffer.concat([header, header])],
      [
        "a repeated field in two runs",
        Buffer.concat([field(2, kv("a", 1n)), Buffer.from([0x18, 0x01]), field(2, kv("b", 2n))]),
      ],
    ];
    for (const [what, wire] of cases) {
      assert.equal(binaryToJson(RangeResponseSchema, wire, NAMINGS[0]!), undefined, what);
      assert.ok(
        typeof generic(RangeResponseSchema, wire, NAMINGS[0]!) === "string",
        `${what}: the generic path answers`,
      );
      assert.equal(
        jsonOfBinary(RangeResponseSchema, wire, NAMINGS[0]!).toString(),
        generic(RangeResponseSchema, wire, NAMINGS[0]!),
        `${what}: jsonOfBinary answers it that way`,
      );
    }
    // Fields it does not know are skipped, as the generic path skips them.
    const unknown = Buffer.concat([header, Buffer.from([0xf8, 0x07, 0x01]), field(2, kv("a", 1n))]);
    assert.equal(assertSame(RangeResponseSchema, unknown, NAMINGS[0]!), "fast");
  });

  it("leaves out zeros that an encoder wrote anyway, and empty packed lists", () => {
    const zero = (field: DescField): Buffer | undefined => {
      const tag = (wireType: number) => Buffer.from([(field.number << 3) | wireType]);
      if (field.number > 15 || field.oneof) return undefined;
      const type =
        field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum")
          ? ScalarType.INT32
          : field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")
            ? field.scalar
            : undefined;
      if (type === undefined) return undefined;
      if (field.fieldKind === "list")
        return type === ScalarType.STRING || type === ScalarType.BYTES
          ? undefined
          : Buffer.concat([tag(2), Buffer.from([0])]);
      if (type === ScalarType.STRING || type === ScalarType.BYTES) return Buffer.concat([tag(2), Buffer.from([0])]);
      if (type === ScalarType.FIXED64 || type === ScalarType.SFIXED64 || type === ScalarType.DOUBLE)
        return Buffer.concat([tag(1), Buffer.alloc(8)]);
      if (type === ScalarType.FIXED32 || type === ScalarType.SFIXED32 || type === ScalarType.FLOAT)
        return Buffer.concat([tag(5), Buffer.alloc(4)]);
      return Buffer.concat([tag(0), Buffer.from([0])]);
    };
    let tried = 0;
    for (const schema of MESSAGES) {
      const zeros = schema.fields.map(zero).filter((z): z is Buffer => z !== undefined);
      for (const names of NAMINGS) {
        for (const z of zeros) {
          assert.equal(assertSame(schema, z, names), "fast", `${schema.typeName} ${z.toString("hex")}`);
          tried++;
        }
        if (zeros.length > 1) assertSame(schema, Buffer.concat(zeros), names);
      }
    }
    assert.ok(tried > 50);
    // WatchCreateRequest.filters (field 5): packed runs, empty or not, and elements one by one, in one list.
    const filters = (...parts: number[][]) => Buffer.from(parts.flat());
    for (const wire of [
      filters([0x2a, 0x00]),
      filters([0x2a, 0x00], [0x28, 0x01]),
      filters([0x2a, 0x02, 0x00, 0x01], [0x28, 0x01], [0x2a, 0x00], [0x2a, 0x01, 0x07]),
    ]) {
      for (const names of NAMINGS) assert.equal(assertSame(WatchCreateRequestSchema, wire, names), "fast");
    }
  });

  it("writes a 2,000-key Range answer as etcd's gateway fields, byte for byte", () => {
    const kvs = Array.from({ length: 2000 }, (_, i) => ({
      key: Buffer.from(`key/${String(i).padStart(5, "0")}`),
      value: Buffer.alloc(500, i % 251),
      createRevision: BigInt(i + 2),
      modRevision: BigInt(i + 2),
      version: 1n,
    }));
    const wire = toBinary(
      RangeResponseSchema,
      create(RangeResponseSchema, {
        header: { clusterId: 14841639068965178418n, memberId: 10276657743932975437n, revision: 2001n, raftTerm: 2n },
        kvs,
        count: 2000n,
      }),
    );
    const json = binaryToJson(RangeResponseSchema, wire, NAMINGS[0]!);
    assert.ok(json);
    assert.equal(json.toString(), generic(RangeResponseSchema, wire, NAMINGS[0]!));
    assert.match(
      json.toString("latin1", 0, 160),
      /^\{"header":\{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2001","raft_term":"2"\},"kvs":\[\{"key":"a2V5LzAwMDAw",/,
    );
  });

  it("writes nested answers: a Txn's responses, each its one member of a oneof", () => {
    const wire = toBinary(
      TxnResponseSchema,
      create(TxnResponseSchema, {
        header: { revision: 9n },
        succeeded: true,
        responses: [
          { response: { case: "responsePut", value: {} } },
          { response: { case: "responseRange", value: { kvs: [{ key: Buffer.from("k"), lease: 7n }], count: 1n } } },
          {
            response: {
              case: "responseTxn",
              value: { responses: [{ response: { case: "responseDeleteRange", value: { deleted: 1n } } }] },
            },
          },
        ],
      }),
    );
    for (const names of NAMINGS) assert.equal(assertSame(TxnResponseSchema, wire, names), "fast");
  });
});
