// The HTTP/2 frame reader alone: whatever reads the input comes in, it hands
// on the frames that were sent, whole and in order, including from a read
// buffer the socket overwrites after each read (the upstream's `onread`).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CLIENT_PREFACE, ErrorCode, frame, FrameType } from "../../src/http2/frames.js";
import { FrameReader } from "../../src/http2/frame-reader.js";
import { ConnectionError } from "../../src/http2/limits.js";

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

const sentFrame = fc.record({
  type: fc.constantFrom(FrameType.DATA, FrameType.HEADERS, FrameType.PING, FrameType.WINDOW_UPDATE),
  flags: fc.nat(255),
  streamId: fc.nat(1000),
  payload: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 16000, maxLength: 16384 })),
});

function reader(preface: boolean) {
  const seen: Seen[] = [];
  // The sink copies, as a DATA reader of reused input must.
  const r = new FrameReader(
    preface,
    (type, flags, streamId, payload) => seen.push({ type, flags, streamId, payload: Buffer.from(payload) }),
    () => true,
  );
  return { r, seen };
}

describe("FrameReader", () => {
  it("hands on every frame sent, however the input is cut, from fresh or reused read buffers", () => {
    fc.assert(
      fc.property(
        fc.array(sentFrame, { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 10 }),
        fc.boolean(),
        fc.boolean(),
        (frames, cuts, preface, reused) => {
          const input = Buffer.concat([
            ...(preface ? [CLIENT_PREFACE] : []),
            ...frames.map((f) => frame(f.type, f.flags, f.streamId, f.payload)),
          ]);
          const { r, seen } = reader(preface);
          const buffer = Buffer.alloc(70_000);
          for (let at = 0, i = 0; at < input.length; at += cuts[i++ % cuts.length]!) {
            const read = input.subarray(at, at + cuts[i % cuts.length]!);
            if (!reused) r.push(read);
            else {
              read.copy(buffer);
              r.push(buffer.subarray(0, read.length), true);
              buffer.fill(0xee);
            }
          }
          assert.deepEqual(
            seen,
            frames.map((f) => ({ ...f, payload: Buffer.from(f.payload) })),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses a wrong preface and a frame over 16 KB with the connection errors RFC 9113 names", () => {
    const codeOf = (preface: boolean, input: Buffer) => {
      try {
        reader(preface).r.push(input);
        return undefined;
      } catch (err) {
        return (err as ConnectionError).code;
      }
    };
    assert.equal(codeOf(true, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), ErrorCode.PROTOCOL_ERROR);
    const oversized = frame(FrameType.DATA, 0, 1, Buffer.alloc(16385));
    assert.equal(codeOf(false, oversized.subarray(0, 9)), ErrorCode.FRAME_SIZE_ERROR);
  });

  it("stops handing on frames once told the connection is gone", () => {
    let calls = 0;
    const r = new FrameReader(
      false,
      () => calls++,
      () => calls < 2,
    );
    r.push(Buffer.concat([1, 2, 3].map((id) => frame(FrameType.PING, 0, 0, Buffer.alloc(8, id)))));
    assert.equal(calls, 2);
  });
});
