import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  bodyHead,
  GatheredFrame,
  gatherFrame,
  messageBytesField,
  requestMessage,
  wholeFrame,
} from "../../src/grpc/request-frame.js";
import { bytesField } from "../../src/grpc/scan.js";
import { frame, PREFIX_BYTES } from "../../src/grpc/wire.js";

const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
};

/** One top-level field of any wire type, hand-encoded (fields 1 to 3, so that repeats are common). */
const field = fc.oneof(
  fc
    .record({ number: fc.integer({ min: 1, max: 3 }), bytes: fc.uint8Array({ maxLength: 40 }) })
    .map(({ number, bytes }) => Buffer.from([...varint(number * 8 + 2), ...varint(bytes.length), ...bytes])),
  fc
    .record({ number: fc.integer({ min: 1, max: 3 }), value: fc.integer({ min: 0, max: 2 ** 40 }) })
    .map(({ number, value }) => Buffer.from([...varint(number * 8), ...varint(value)])),
  fc.integer({ min: 1, max: 3 }).map((number) => Buffer.from([...varint(number * 8 + 1), 1, 2, 3, 4, 5, 6, 7, 8])),
  fc.integer({ min: 1, max: 3 }).map((number) => Buffer.from([...varint(number * 8 + 5), 1, 2, 3, 4])),
);
const message = fc.array(field, { maxLength: 8 }).map((fields) => Buffer.concat(fields));

/** `bytes` cut at the given points (sorted, deduplicated), empty pieces included. */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    pieces.push(bytes.subarray(from, p));
    from = p;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

const gathered = (framed: Buffer, points: number[]) => new GatheredFrame(cut(framed, points), framed.length);

describe("request frames gathered as they arrived", () => {
  it("reads a field from any split of the frame as from the joined message, the last of a repeated one", () => {
    fc.assert(
      fc.property(
        message,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        (m, points, wanted) => {
          const expected = bytesField(m, wanted);
          const got = messageBytesField(gathered(frame(m), points), wanted);
          assert.deepEqual(got && Buffer.from(got), expected && Buffer.from(expected));
          assert.deepEqual(messageBytesField(frame(m), wanted), expected, "a single buffer reads the same");
        },
      ),
    );
  });

  it("refuses a truncated message from any split, as the joined reader does", () => {
    fc.assert(
      fc.property(message, fc.array(fc.nat(), { maxLength: 6 }), fc.nat(), (m, points, drop) => {
        fc.pre(m.length > 0);
        const truncated = m.subarray(0, drop % m.length);
        let joinedFails = false;
        try {
          bytesField(truncated, 1);
        } catch {
          joinedFails = true;
        }
        let piecesFail = false;
        try {
          messageBytesField(gathered(frame(truncated), points), 1);
        } catch {
          piecesFail = true;
        }
        assert.equal(piecesFail, joinedFails);
      }),
    );
  });

  it("takes a value lying in one piece as a view, and copies only one that spans pieces", () => {
    const key = Buffer.from("a-key");
    const m = Buffer.concat([Buffer.from([0x0a, key.length]), key, Buffer.from([0x12, 3, 1, 2, 3])]);
    const framed = frame(m);
    // The prefix (5 bytes), the key's tag and length (2), then the key (7 to 12).
    const inOne = new GatheredFrame([framed.subarray(0, 12), framed.subarray(12)], framed.length);
    const view = messageBytesField(inOne, 1)!;
    assert.ok(view.buffer === framed.buffer, "a view of the piece");
    assert.deepEqual(Buffer.from(view), key);
    const spanning = new GatheredFrame([framed.subarray(0, 10), framed.subarray(10)], framed.length);
    const copy = messageBytesField(spanning, 1)!;
    assert.ok(copy.buffer !== framed.buffer, "a copy");
    assert.deepEqual(Buffer.from(copy), key);
  });

  it("keeps a large body in its pieces, and joins a small one or one of tiny pieces", () => {
    const body = Buffer.alloc(256 * 1024, 7);
    const large = cut(body, [16384, 32768, 100000]);
    const kept = gatherFrame(large, body.length);
    assert.ok(kept instanceof GatheredFrame);
    assert.deepEqual(kept.pieces, large, "the very pieces, not copies");
    assert.equal(kept.length, body.length);

    const tiny = Array.from({ length: 256 }, (_, i) => body.subarray(i * 1024, (i + 1) * 1024));
    const joined = gatherFrame(tiny, body.length);
    assert.ok(Buffer.isBuffer(joined), "a request of 1 KiB pieces is joined, not kept as hundreds of views");
    assert.ok(joined.equals(body));

    const small = gatherFrame([body.subarray(0, 10), body.subarray(10, 20)], 20);
    assert.ok(Buffer.isBuffer(small));
    const one = body.subarray(0, 100);
    assert.equal(gatherFrame([one], 100), one, "one piece is the frame itself");
  });

  it("keeps only the first `length` bytes, whatever pieces follow them", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300_000 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.nat(),
        (bytes, points, keep) => {
          const body = Buffer.from(bytes);
          const length = 1 + (keep % body.length);
          const pieces = cut(body, points).filter((p) => p.length > 0);
          const kept = gatherFrame(pieces, length);
          assert.equal(kept.length, length);
          assert.ok(wholeFrame(kept).equals(body.subarray(0, length)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("joins a gathered frame once, when something reads it whole, and then holds only the joined copy", () => {
    const m = Buffer.alloc(100_000, 3);
    const framed = frame(m);
    const g = gathered(framed, [3, 70_000]);
    assert.deepEqual(
      bodyHead(g.pieces, PREFIX_BYTES),
      framed.subarray(0, PREFIX_BYTES),
      "the prefix across a short first piece",
    );
    assert.deepEqual(Buffer.from(requestMessage(g)), m);
    assert.equal(g.pieces.length, 1);
    assert.equal(wholeFrame(g), g.pieces[0], "joined once");
    assert.ok(wholeFrame(g).equals(framed));
    assert.deepEqual(
      bodyHead([framed.subarray(0, 3)], PREFIX_BYTES),
      framed.subarray(0, 3),
      "a body shorter than the prefix",
    );
    assert.equal(bodyHead([], PREFIX_BYTES).length, 0, "no body");
  });
});
