/**
 * A unary request's gRPC frame (its prefix and message) as the proxy passes
 * it on: one buffer, or a large request gathered as the pieces it arrived in.
 *
 * A 1 MiB Put reaches the proxy as some sixty DATA frames. Joined, it cost a
 * copy and a fresh megabyte outside V8's heap per call, and V8 collects in
 * full for about every 64 MB of such memory. Gathered, its pieces go on to
 * etcd as they are; only a feature that reads the message whole (the
 * namespace, leasing, a Txn's retry check) joins them, once.
 */
import { bytesField, bytesFieldOfPieces } from "./scan.js";
import { messageOf, PREFIX_BYTES } from "./wire.js";

export type RequestFrame = Buffer | GatheredFrame;

/** Requests at least this large are gathered rather than joined. */
const GATHER_FROM_BYTES = 64 * 1024;
/**
 * Pieces at least this large on average: a request sent in tiny DATA
 * frames is joined, not kept as thousands of views until its call ends.
 */
const MIN_AVERAGE_PIECE_BYTES = 4096;

export class GatheredFrame {
  private parts: readonly Buffer[];

  constructor(
    parts: readonly Buffer[],
    /** The frame's bytes, prefix included (as a Buffer's `length`). */
    readonly length: number,
  ) {
    this.parts = parts;
  }

  /** The frame's bytes in order, to be written out as they are. */
  get pieces(): readonly Buffer[] {
    return this.parts;
  }

  /** The frame in one buffer: joined the first time something needs it, and from then on held joined only. */
  whole(): Buffer {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts, this.length)];
    return this.parts[0]!;
  }
}

/**
 * The first `length` bytes of a request body received as `pieces`: kept in
 * those pieces when large enough to be worth it, else in one buffer.
 */
export function gatherFrame(pieces: readonly Buffer[], length: number): RequestFrame {
  const kept = firstBytes(pieces, length);
  if (kept.length === 1) return kept[0]!;
  if (length >= GATHER_FROM_BYTES && length >= kept.length * MIN_AVERAGE_PIECE_BYTES) {
    return new GatheredFrame(kept, length);
  }
  return Buffer.concat(kept, length);
}

/** The pieces that hold the first `length` bytes, the last one cut to fit (all of them if they hold fewer). */
function firstBytes(pieces: readonly Buffer[], length: number): readonly Buffer[] {
  let total = 0;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    total += piece.length;
    if (total >= length) {
      if (total === length && i === pieces.length - 1) return pieces;
      const kept = pieces.slice(0, i + 1);
      kept[i] = piece.subarray(0, piece.length - (total - length));
      return kept;
    }
  }
  return pieces;
}

export function wholeFrame(frame: RequestFrame): Buffer {
  return frame instanceof GatheredFrame ? frame.whole() : frame;
}

/** The request message, in one piece (a gathered frame is joined). */
export function requestMessage(frame: RequestFrame): Uint8Array {
  return messageOf(wholeFrame(frame));
}

/**
 * The first `n` bytes of a body received as `pieces` (fewer if it is
 * shorter), read without joining it: the first piece may be shorter than
 * the prefix.
 */
export function bodyHead(pieces: readonly Buffer[], n: number): Buffer {
  const first = pieces[0];
  if (first !== undefined && first.length >= n) return first.subarray(0, n);
  return Buffer.concat(firstBytes(pieces, n));
}

/**
 * The last value of the message's length-delimited field `field` (a Put's
 * key), found without joining a gathered frame; undefined when absent.
 */
export function messageBytesField(frame: RequestFrame, field: number): Uint8Array | undefined {
  if (!(frame instanceof GatheredFrame)) return bytesField(messageOf(frame), field);
  return bytesFieldOfPieces(frame.pieces, PREFIX_BYTES, field);
}
