import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { fromJson, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { exact64BitFields, parseExactJson, type JsonDialect } from "../../src/grpc/json-numbers.js";
import { SERVICES } from "../helpers/services.js";

const SIGNED = new Set([ScalarType.INT64, ScalarType.SINT64, ScalarType.SFIXED64]);
const UNSIGNED = new Set([ScalarType.UINT64, ScalarType.FIXED64]);

/** A way from a request message down to one of its 64-bit fields, through messages and lists. */
interface FieldPath {
  request: DescMessage;
  steps: DescField[];
  unsigned: boolean;
}

function sixtyFourBitFields(request: DescMessage): FieldPath[] {
  const found: FieldPath[] = [];
  const walk = (message: DescMessage, steps: DescField[], seen: Set<string>) => {
    for (const field of message.fields) {
      const scalar =
        field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")
          ? field.scalar
          : undefined;
      if (scalar !== undefined && (SIGNED.has(scalar) || UNSIGNED.has(scalar))) {
        found.push({ request, steps: [...steps, field], unsigned: UNSIGNED.has(scalar) });
      }
      const inner =
        field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")
          ? field.message
          : undefined;
      if (inner && !seen.has(inner.typeName)) walk(inner, [...steps, field], new Set([...seen, inner.typeName]));
    }
  };
  walk(request, [], new Set([request.typeName]));
  return found;
}

const PATHS = [...new Set(SERVICES.flatMap((s) => s.methods.map((m) => m.input)))].flatMap(sixtyFourBitFields);

/** The JSON text of a request that holds `literal` at the path (lists get one element), named by proto or JSON names. */
function requestText(path: FieldPath, literal: string, jsonNames: boolean): string {
  const MARK = "@@value@@";
  let value: unknown = MARK;
  for (let i = path.steps.length - 1; i >= 0; i--) {
    const field = path.steps[i]!;
    value = { [jsonNames ? field.jsonName : field.name]: field.fieldKind === "list" ? [value] : value };
  }
  return JSON.stringify(value).replace(`"${MARK}"`, literal);
}

/** The field's value in the decoded message. */
function valueAt(message: unknown, path: FieldPath): unknown {
  let at: unknown = message;
  for (const field of path.steps) {
    const holder = at as Record<string, unknown>;
    // A oneof's member sits under the oneof's name, as { case, value }.
    const next = field.oneof ? (holder[field.oneof.localName] as { value: unknown }).value : holder[field.localName];
    at = field.fieldKind === "list" ? (next as unknown[])[0] : next;
  }
  return at;
}

const range = (unsigned: boolean) =>
  unsigned ? fc.bigInt(0n, 2n ** 64n - 1n) : fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n);

/** A 64-bit field of some request, and a value of its type, often at the edges. */
const fieldAndValue = fc
  .constantFrom(...PATHS)
  .chain((path) =>
    fc.tuple(
      fc.constant(path),
      fc.oneof(
        range(path.unsigned),
        fc.constantFrom(
          ...(path.unsigned
            ? [0n, 2n ** 64n - 1n, 2n ** 53n + 1n]
            : [-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n, -1n]),
        ),
      ),
    ),
  );

describe("64-bit integers in JSON", () => {
  it("the etcd API's requests have 64-bit fields to check", () => {
    assert.ok(PATHS.length >= 40, `${PATHS.length} fields`);
    const named = PATHS.map((p) => `${p.request.typeName}.${p.steps.map((s) => s.name).join(".")}`);
    for (const expected of [
      "etcdserverpb.PutRequest.lease",
      "etcdserverpb.RangeRequest.revision",
      "etcdserverpb.LeaseTimeToLiveRequest.ID",
      "etcdserverpb.MemberRemoveRequest.ID",
      "etcdserverpb.TxnRequest.success.request_put.lease",
      "etcdserverpb.TxnRequest.compare.mod_revision",
      "etcdserverpb.WatchRequest.create_request.start_revision",
      "etcdproxy.v1.WatchRequest.watches.start_revision",
    ]) {
      assert.ok(named.includes(expected), expected);
    }
  });

  for (const dialect of ["3.4", "3.5"] as JsonDialect[]) {
    it(`every one reaches the message exactly, as a number or a string, through the gateway (etcd ${dialect})`, () => {
      fc.assert(
        fc.property(fieldAndValue, fc.boolean(), fc.boolean(), ([path, value], quoted, jsonNames) => {
          const text = requestText(path, quoted ? `"${value}"` : String(value), jsonNames);
          const [document] = parseExactJson(text);
          const message = fromJson(path.request, exact64BitFields(path.request, document!, dialect));
          assert.equal(valueAt(message, path), value, text);
        }),
        { numRuns: 2000 },
      );
    });
  }

  it("every one reaches the message exactly through Connect's reading (long integers quoted, then JSON.parse)", () => {
    fc.assert(
      fc.property(fieldAndValue, ([path, value]) => {
        const text = requestText(path, String(value), true);
        const quoted = JSON.stringify(parseExactJson(text)[0]!.value);
        const message = fromJson(path.request, JSON.parse(quoted));
        assert.equal(valueAt(message, path), value, text);
      }),
      { numRuns: 2000 },
    );
  });

  it("refuses what etcd refuses, in each line's words", () => {
    const lease = (literal: string) => `{"key":"YQ==","lease":${literal}}`;
    const refusal = (
      text: string,
      dialect: JsonDialect,
      schema = PATHS.find((p) => p.request.typeName === "etcdserverpb.PutRequest")!.request,
    ) => {
      try {
        exact64BitFields(schema, parseExactJson(text)[0]!, dialect);
        return undefined;
      } catch (err) {
        return (err as Error).message;
      }
    };
    assert.equal(refusal(lease("1.5"), "3.4"), "json: cannot unmarshal number 1.5 into Go value of type int64");
    assert.equal(refusal(lease('"1e3"'), "3.4"), "json: cannot unmarshal number 1e3 into Go value of type int64");
    assert.equal(
      refusal(lease("9223372036854775808"), "3.4"),
      "json: cannot unmarshal number 9223372036854775808 into Go value of type int64",
    );
    assert.equal(refusal(lease('"abc"'), "3.4"), "invalid character 'a' looking for beginning of value");
    assert.equal(refusal(lease("1.5"), "3.5"), "proto: (line 1:23): invalid value for int64 field lease: 1.5");
    assert.equal(refusal(lease('"abc"'), "3.5"), 'proto: (line 1:23): invalid value for int64 field lease: "abc"');
    assert.equal(
      refusal(`{\n  "key": "YQ==",\n  "lease": 1e30}`, "3.5"),
      "proto: (line 3:12): invalid value for int64 field lease: 1e30",
    );
    // etcd 3.5 reads whole numbers however they are written.
    assert.equal(refusal(lease("1e3"), "3.5"), undefined);
    assert.equal(refusal(lease('"1.50e2"'), "3.5"), undefined);
    assert.equal(refusal(lease("-0.0"), "3.5"), undefined);
    const remove = PATHS.find((p) => p.request.typeName === "etcdserverpb.MemberRemoveRequest")!.request;
    assert.equal(refusal(`{"ID":-1}`, "3.4", remove), "json: cannot unmarshal number -1 into Go value of type uint64");
    assert.equal(refusal(`{"ID":-1}`, "3.5", remove), "proto: (line 1:7): invalid value for uint64 field ID: -1");
    assert.equal(
      refusal(`{"ID":18446744073709551616}`, "3.5", remove),
      "proto: (line 1:7): invalid value for uint64 field ID: 18446744073709551616",
    );
  });

  it("reads several documents in a row as JSON.parse does, but for integers a double would round, kept as their digits", () => {
    const expected = (v: unknown): unknown => {
      if (typeof v === "number") return /^-?\d+$/.test(String(v)) && !Number.isSafeInteger(v) ? String(v) : v;
      if (Array.isArray(v)) return v.map(expected);
      if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expected(x)]));
      return v;
    };
    fc.assert(
      fc.property(fc.array(fc.jsonValue({ maxDepth: 3 }), { minLength: 1, maxLength: 3 }), (values) => {
        const text = values.map((v) => JSON.stringify(v)).join("\n");
        assert.deepEqual(
          parseExactJson(text).map((d) => d.value),
          values.map((v) => expected(JSON.parse(JSON.stringify(v)))),
        );
      }),
    );
    assert.throws(() => parseExactJson('{"a":1} nope'), SyntaxError);
  });
});
