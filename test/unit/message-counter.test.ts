// The bench's counting client counts a gRPC body's message bytes however
// HTTP/2 splits it into DATA frames.
import assert from "node:assert/strict";
import { it } from "node:test";
import fc from "fast-check";
import { grpcFrame, MessageCounter } from "../../bench/counting-channel.js";

it("counts the message bytes of a body split anywhere, prefixes included", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (messages, cuts) => {
        const body = Buffer.concat(messages.map(grpcFrame));
        const at = [...new Set(cuts.map((c) => (body.length ? c % body.length : 0)))].sort((a, b) => a - b);
        const counter = new MessageCounter();
        let from = 0;
        for (const to of [...at, body.length]) {
          counter.feed(body.subarray(from, to));
          from = to;
        }
        assert.equal(
          counter.bytes,
          messages.reduce((sum, m) => sum + m.length, 0),
        );
      },
    ),
  );
});

it("reads a length over 2^24 from all four prefix bytes", () => {
  const counter = new MessageCounter();
  counter.feed(Buffer.from([0, 0x01, 0x00, 0x00, 0x02]));
  counter.feed(Buffer.alloc(3));
  assert.equal(counter.bytes, 3);
  counter.feed(Buffer.alloc((1 << 24) + 2 - 3));
  assert.equal(counter.bytes, (1 << 24) + 2);
  counter.feed(grpcFrame(Buffer.from("x")));
  assert.equal(counter.bytes, (1 << 24) + 3);
});
