import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_WINDOW,
} from "./frames.js";
import { ConnectionError } from "./limits.js";

export type FrameSink = (type: number, flags: number, streamId: number, payload: Buffer) => void;

/**
 * Cuts a connection's input into frames: the preface first (server role),
 * then each frame, handed to `sink` as soon as it is whole. Pure: it
 * knows nothing of what frames mean, and throws ConnectionError only for
 * a bad preface or an oversized frame.
 *
 * A frame begun in one read is completed from the next, taking only its
 * own bytes: joining the whole read to it would copy nearly every byte
 * received (a 16 KB DATA frame seldom ends a read), and a frame sent a
 * byte at a time waits as pieces, joined once.
 *
 * A DATA frame without padding is not joined at all: what a read holds of
 * it is handed on at once, as a DATA frame of its own, END_STREAM only on
 * the last part. That means the same to HTTP/2 (windows count payload bytes,
 * and only END_STREAM marks an end), and saves copying the quarter of a
 * large request's bytes whose frames span two reads.
 *
 * Payloads are views of the input. Input in a reused buffer (`transient`)
 * is never kept as a view here (partial frames are copied), and the sink
 * must copy what it keeps of a payload past its call.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private held = 0;
  /** Bytes the partial frame (or the preface) needs before parsing is worth it. */
  private needed: number;
  private prefaceExpected: boolean;
  /** Of an unpadded DATA frame being handed on in parts: the bytes still to come, its stream and its flags. */
  private dataLeft = 0;
  private dataStream = 0;
  private dataFlags = 0;

  constructor(
    expectPreface: boolean,
    private readonly sink: FrameSink,
    /** After each frame: false stops reading (the connection is gone). */
    private readonly goOn: () => boolean,
  ) {
    this.prefaceExpected = expectPreface;
    this.needed = expectPreface ? CLIENT_PREFACE.length : FRAME_HEADER_BYTES;
  }

  /** Reads `chunk`; throws ConnectionError on input no frame can be made of. */
  push(chunk: Buffer, transient = false): void {
    const keep = (view: Buffer) => (transient ? Buffer.from(view) : view);
    let rest = chunk;
    for (;;) {
      if (this.dataLeft > 0) {
        if (rest.length === 0) return;
        const take = Math.min(rest.length, this.dataLeft);
        if (!this.dataPart(rest.subarray(0, take))) return;
        rest = rest.subarray(take);
      } else if (this.held > 0) {
        const take = Math.min(rest.length, this.needed - this.held);
        this.chunks.push(keep(rest.subarray(0, take)));
        this.held += take;
        rest = rest.subarray(take);
        if (this.held < this.needed) return;
        const joined = Buffer.concat(this.chunks, this.held);
        this.chunks = [];
        this.held = 0;
        // A header alone comes back as the partial frame (or the start of a DATA frame's parts).
        if (!this.parse(joined, false)) return;
      } else {
        if (rest.length === 0) return;
        if (rest.length < this.needed) {
          this.chunks.push(keep(rest));
          this.held = rest.length;
          return;
        }
        // Takes all of `rest`: whole frames, then a partial one held or a DATA frame's first part.
        this.parse(rest, transient);
        return;
      }
    }
  }

  /**
   * Hands on the whole frames in `chunk`, then keeps the rest as the partial
   * frame or hands it on as a DATA frame's first part; false once told to stop.
   */
  private parse(chunk: Buffer, transient: boolean): boolean {
    let offset = 0;
    if (this.prefaceExpected) {
      if (!chunk.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad connection preface");
      }
      this.prefaceExpected = false;
      offset = CLIENT_PREFACE.length;
    }
    this.needed = FRAME_HEADER_BYTES;
    while (chunk.length - offset >= FRAME_HEADER_BYTES) {
      const length = chunk.readUIntBE(offset, 3);
      if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "frame too large");
      const end = offset + FRAME_HEADER_BYTES + length;
      const type = chunk[offset + 3]!;
      const flags = chunk[offset + 4]!;
      const streamId = chunk.readUInt32BE(offset + 5) & MAX_WINDOW;
      if (end > chunk.length && type === FrameType.DATA && !(flags & Flag.PADDED)) {
        this.dataLeft = length;
        this.dataStream = streamId;
        this.dataFlags = flags;
        const available = chunk.subarray(offset + FRAME_HEADER_BYTES);
        return available.length === 0 || this.dataPart(available);
      }
      if (end > chunk.length) {
        this.needed = FRAME_HEADER_BYTES + length;
        break;
      }
      const view = chunk.subarray(offset + FRAME_HEADER_BYTES, end);
      offset = end;
      this.sink(type, flags, streamId, view);
      if (!this.goOn()) return false;
    }
    if (offset < chunk.length) {
      this.chunks = [transient ? Buffer.from(chunk.subarray(offset)) : chunk.subarray(offset)];
      this.held = chunk.length - offset;
    }
    return true;
  }

  /** Hands on the next part of the DATA frame being passed on in parts; false once told to stop. */
  private dataPart(part: Buffer): boolean {
    this.dataLeft -= part.length;
    const flags = this.dataLeft > 0 ? this.dataFlags & ~Flag.END_STREAM : this.dataFlags;
    this.sink(FrameType.DATA, flags, this.dataStream, part);
    return this.goOn();
  }
}
