// Random protobuf messages for property tests: init data for create(),
// values weighted toward zero and the edges, where encoders leave fields out
// or numbers change shape.
import fc from "fast-check";
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";

const int32 = fc.oneof(fc.constant(0), fc.integer(), fc.constantFrom(-1, -(2 ** 31), 2 ** 31 - 1));
const uint32 = fc.oneof(fc.constant(0), fc.nat(), fc.constantFrom(2 ** 32 - 1));
const int64 = fc.oneof(
  fc.constant(0n),
  fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n),
  fc.bigInt(-1000n, 1n << 50n),
  fc.constantFrom(-1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 49n, 2n ** 53n + 1n),
);
const uint64 = fc.oneof(fc.constant(0n), fc.bigInt(0n, 2n ** 64n - 1n), fc.bigInt(0n, 1n << 50n));
const text = fc.oneof(
  fc.constant(""),
  fc.string(),
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.string().map((s) => `\uFEFF${s}`),
  fc.constantFrom('"\\\n\t\u0000\u001f\u2028</script>', "é", "\ud800", "a\udc00b", "\ufffd"),
);
const bytes = fc.oneof(
  fc.constant(new Uint8Array()),
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ minLength: 127, maxLength: 300 }),
);

function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      return bytes;
    default:
      return fc.double();
  }
}

function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field.scalar);
    case "enum":
      return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), int32);
    case "message":
      return depth > 3 ? fc.constant(undefined) : fc.option(message(field.message, depth + 1), { nil: undefined });
    case "list": {
      const element =
        field.listKind === "scalar"
          ? scalar(field.scalar)
          : field.listKind === "enum"
            ? fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), int32)
            : depth > 3
              ? fc.constant(undefined)
              : message(field.message, depth + 1);
      return fc.array(element, { maxLength: depth > 3 ? 0 : 3 });
    }
    case "map":
      return fc.constant({});
  }
}

const arbitraries = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** A random message of `schema`, as init data for create(). */
export function message(schema: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const key = `${schema.typeName}@${depth}`;
  const known = arbitraries.get(key);
  if (known) return known;
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) if (!field.oneof) parts[field.localName] = fieldValue(field, depth);
  for (const oneof of schema.oneofs) {
    parts[oneof.localName] = fc.oneof(
      fc.constant({ case: undefined }),
      ...oneof.fields.map((f) => fieldValue(f, depth).map((value) => ({ case: f.localName, value }))),
    );
  }
  const arb = fc.record(parts, { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
  arbitraries.set(key, arb);
  return arb;
}
