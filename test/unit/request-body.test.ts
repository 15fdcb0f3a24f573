// A unary request's body, however HTTP/2 splits it: the same bytes as
// joining the chunks, and never more held than twice what arrived.
import assert from "node:assert/strict";
import { it } from "node:test";
import fc from "fast-check";
import { RequestBody } from "../../src/server/native/request-body.js";

const framed = (length: number, announced = length) => {
  const body = Buffer.alloc(5 + length);
  body.writeUInt32BE(announced, 1);
  for (let i = 5; i < body.length; i++) body[i] = i % 251;
  return body;
};

function feed(bytes: Buffer, cuts: number[]): { body: RequestBody; maxHeldPerReceived: number } {
  const body = new RequestBody();
  let maxHeldPerReceived = 0;
  let from = 0;
  for (const to of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b).concat(bytes.length)) {
    if (to <= from) continue;
    body.add(bytes.subarray(from, to));
    from = to;
    maxHeldPerReceived = Math.max(maxHeldPerReceived, body.held / body.size);
  }
  return { body, maxHeldPerReceived };
}

it("gives back exactly the bytes received, split anywhere, large or small, announced truly or not", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 300_000 }),
      fc.integer({ min: -70_000, max: 70_000 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.integer({ min: 0, max: 40 }),
      (length, lie, cuts, extra) => {
        const announced = Math.max(0, length + lie);
        const bytes = Buffer.concat([framed(length, announced), Buffer.alloc(extra, 7)]);
        const { body, maxHeldPerReceived } = feed(bytes, cuts);
        assert.ok(body.bytes().equals(bytes));
        assert.equal(body.size, bytes.length);
        assert.ok(maxHeldPerReceived <= 2, `held ${maxHeldPerReceived}× what arrived`);
      },
    ),
    { numRuns: 200 },
  );
});

it("copies a large body into one buffer of the announced size once half of it is here", () => {
  const bytes = framed(1 << 20);
  const body = new RequestBody();
  const quarter = bytes.length >> 2;
  body.add(bytes.subarray(0, quarter));
  body.add(bytes.subarray(quarter, 2 * quarter));
  assert.equal(body.held, 2 * quarter, "under half: the chunks as they came");
  body.add(bytes.subarray(2 * quarter, 3 * quarter));
  assert.equal(body.held, bytes.length, "past half: one buffer of the announced size");
  body.add(bytes.subarray(3 * quarter));
  assert.ok(body.bytes().equals(bytes));
});

it("never allocates what a client announces and does not send", () => {
  const body = new RequestBody();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(1_500_000, 1);
  body.add(prefix);
  body.add(Buffer.alloc(1000));
  assert.equal(body.held, 1005);
});
