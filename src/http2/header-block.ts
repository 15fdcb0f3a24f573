/**
 * Header blocks as they arrive: a HEADERS frame, then CONTINUATION frames
 * until END_HEADERS, with nothing else between them on the connection
 * (RFC 9113 §6.10). The block is bounded in bytes and in frames, so a peer
 * cannot make this side hold an endless one.
 */
import { ErrorCode, Flag, MAX_WINDOW } from "./frames.js";
import { ConnectionError, H2_LIMITS } from "./limits.js";

/** A complete header block, still encoded; see H2Connection.onHeaderBlock. */
export type HeaderBlockHandler = (streamId: number, flags: number, block: Buffer, selfDependent: boolean) => void;

interface PendingBlock {
  streamId: number;
  flags: number;
  chunks: Buffer[];
  size: number;
  frames: number;
  selfDependent: boolean;
}

export class HeaderBlockAssembler {
  private pending: PendingBlock | undefined;

  constructor(private readonly onBlock: HeaderBlockHandler) {}

  /** A block is open: the next frame must be its CONTINUATION. */
  get open(): boolean {
    return this.pending !== undefined;
  }

  /** `reused`: the payload is a view of a read buffer that will be overwritten, so what is kept is copied. */
  headers(flags: number, streamId: number, payload: Buffer, reused: boolean): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = unpad(flags, payload);
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      selfDependent = (block.readUInt32BE(0) & MAX_WINDOW) === streamId;
      block = block.subarray(5);
    }
    if (flags & Flag.END_HEADERS) return this.onBlock(streamId, flags, block, selfDependent);
    const kept = reused ? Buffer.from(block) : block;
    this.pending = { streamId, flags, chunks: [kept], size: block.length, frames: 1, selfDependent };
  }

  continuation(flags: number, streamId: number, payload: Buffer, reused: boolean): void {
    const pending = this.pending;
    if (!pending || pending.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    pending.chunks.push(reused ? Buffer.from(payload) : payload);
    pending.size += payload.length;
    if (pending.size > H2_LIMITS.maxHeaderBlockBytes || ++pending.frames > H2_LIMITS.maxHeaderBlockFrames) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (flags & Flag.END_HEADERS) {
      this.pending = undefined;
      // Decoded even for a stream that is gone: the table must stay in step with the peer's.
      this.onBlock(streamId, pending.flags, Buffer.concat(pending.chunks, pending.size), pending.selfDependent);
    }
  }
}

/** A DATA or HEADERS frame's payload without its padding. */
export function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  return payload.subarray(1, payload.length - pad);
}
