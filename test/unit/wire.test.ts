import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { frame, FrameDecoder, FrameError, PREFIX_BYTES, unaryFrameLength } from "../../src/grpc/wire.js";

const message = Buffer.from([0x0a, 0x01, 0x6b]);

describe("unaryFrameLength", () => {
  it("finds the first message of a unary body, and ignores what follows it, as etcd does", () => {
    const one = frame(message);
    assert.equal(unaryFrameLength(one, one.length, 100), one.length);
    const two = Buffer.concat([one, frame(message)]);
    assert.equal(unaryFrameLength(two, two.length, 100), one.length, "a second message");
    assert.equal(unaryFrameLength(one, one.length + 3, 100), one.length, "stray bytes");
  });
  const codeOf = (body: Buffer, max = 100) => {
    try {
      unaryFrameLength(body.subarray(0, PREFIX_BYTES), body.length, max);
      return 0;
    } catch (e) {
      return (e as FrameError).grpcCode;
    }
  };
  it("answers each defect with grpc-go's status", () => {
    assert.equal(codeOf(Buffer.alloc(0)), 2, "empty body");
    assert.equal(codeOf(frame(message).subarray(0, 6)), 2, "truncated: Unknown 'unexpected EOF', as etcd");
    assert.equal(codeOf(frame(message), 2), 8, "over the limit: ResourceExhausted");
    const compressed = frame(message);
    compressed[0] = 1;
    assert.equal(codeOf(compressed), 12, "compressed without an encoding");
  });
});

describe("FrameDecoder", () => {
  it("reassembles messages split across chunks, and several in one chunk", () => {
    const d = new FrameDecoder(100);
    const two = Buffer.concat([frame(message), frame(Buffer.from("hello"))]);
    assert.deepEqual(d.push(two.subarray(0, 4)), []);
    assert.deepEqual(d.push(two.subarray(4, 10)), [message]);
    assert.deepEqual(d.push(two.subarray(10)), [Buffer.from("hello")]);
    assert.equal(d.pendingBytes, 0);
  });
  it("joins a large message from many small chunks, and keeps what follows it", () => {
    const big = Buffer.alloc(10_000, 7);
    const stream = Buffer.concat([frame(big), frame(message), frame(message).subarray(0, 3)]);
    const d = new FrameDecoder(20_000);
    const got: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 7) got.push(...d.push(stream.subarray(at, at + 7)));
    assert.deepEqual(got, [big, message]);
    assert.equal(d.pendingBytes, 3);
    assert.deepEqual(d.push(frame(message).subarray(3)), [message]);
    assert.equal(d.pendingBytes, 0);
  });
  it("gives the same messages however the stream is cut, joining, or assembling from a reused read buffer", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        (messages, cuts, assemble) => {
          const stream = Buffer.concat(messages.map((m) => frame(m)));
          const d = new FrameDecoder(4000, assemble);
          const got: Buffer[] = [];
          // Assembling, each chunk arrives in one read buffer that is overwritten after the push, as a socket's is.
          const reused = Buffer.alloc(4000);
          for (let at = 0, i = 0; at < stream.length; at += cuts[i++ % cuts.length]!) {
            const piece = stream.subarray(at, at + cuts[i % cuts.length]!);
            if (!assemble) got.push(...d.push(piece));
            else {
              piece.copy(reused);
              got.push(...d.push(reused.subarray(0, piece.length)));
              reused.fill(0xee);
            }
          }
          assert.deepEqual(
            got.map((m) => Buffer.from(m)),
            messages.map((m) => Buffer.from(m)),
          );
          assert.equal(d.pendingBytes, 0);
        },
      ),
    );
  });
  it("refuses a message over the limit as soon as its header says so", () => {
    const d = new FrameDecoder(2);
    assert.throws(
      () => d.push(frame(message).subarray(0, 5)),
      (e: FrameError) => e.grpcCode === 8,
    );
  });
});
