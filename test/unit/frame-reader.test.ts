// The HTTP/2 frame reader alone: whatever reads the input comes in, it hands
// on the frames that were sent, in order, including from a read buffer the
// socket overwrites after each read (the upstream's `onread`). A DATA frame
// without padding may come in parts, which mean the same to HTTP/2.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CLIENT_PREFACE, ErrorCode, Flag, frame, FrameType } from "../../src/http2/frames.js";
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

/**
 * What the frames mean to HTTP/2: runs of unpadded DATA on one stream with the
 * same flags joined (parts or whole frames alike), END_STREAM as a mark of its own.
 */
function meaning(frames: Seen[]): Seen[] {
  const out: Seen[] = [];
  for (const f of frames) {
    const splittable = f.type === FrameType.DATA && !(f.flags & Flag.PADDED);
    const flags = splittable ? f.flags & ~Flag.END_STREAM : f.flags;
    const last = out[out.length - 1];
    if (splittable && last?.type === FrameType.DATA && last.streamId === f.streamId && last.flags === flags) {
      last.payload = Buffer.concat([last.payload, f.payload]);
    } else out.push({ ...f, flags, payload: Buffer.from(f.payload) });
    if (splittable && f.flags & Flag.END_STREAM)
      out.push({ type: -1, flags: 0, streamId: f.streamId, payload: Buffer.alloc(0) });
  }
  return out;
}

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
          assert.deepEqual(meaning(seen), meaning(frames.map((f) => ({ ...f, payload: Buffer.from(f.payload) }))));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("hands on an unpadded DATA frame that spans reads as views of the reads, END_STREAM on the last part only", () => {
    const payload = Buffer.alloc(16384, 7);
    const input = Buffer.concat([
      frame(FrameType.DATA, Flag.END_STREAM, 1, payload),
      frame(
        FrameType.DATA,
        Flag.PADDED | Flag.END_STREAM,
        3,
        Buffer.concat([Buffer.from([2]), payload.subarray(0, 16000), Buffer.alloc(2)]),
      ),
    ]);
    const parts: Array<{ flags: number; streamId: number; payload: Buffer }> = [];
    const r = new FrameReader(
      false,
      (_type, flags, streamId, p) => parts.push({ flags, streamId, payload: p }),
      () => true,
    );
    const reads = [input.subarray(0, 4), input.subarray(4, 5000), input.subarray(5000, 20000), input.subarray(20000)];
    for (const read of reads) r.push(read);
    const first = parts.filter((p) => p.streamId === 1);
    assert.deepEqual(
      first.map((p) => [p.payload.length, p.flags]),
      [
        [5000 - 9, 0],
        [16384 - (5000 - 9), Flag.END_STREAM],
      ],
    );
    assert.ok(
      first[0]!.payload.buffer === input.buffer && first[1]!.payload.buffer === input.buffer,
      "views, not copies",
    );
    const padded = parts.filter((p) => p.streamId === 3);
    assert.equal(padded.length, 1, "a padded frame is handed on whole");
    assert.equal(padded[0]!.payload.length, 16000 + 3);
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
