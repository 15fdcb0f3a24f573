import { Code, ConnectError } from "@connectrpc/connect";
import type { ReadLoan } from "../http2/read-loan.js";
import { FrameError, PREFIX_BYTES } from "../grpc/wire.js";
import { ArrivingAnswer, type AnswerHooks } from "./answer.js";

/** How much of a relayed answer is known before it is handed on: the response header fits many times over. */
const HEAD_BYTES = 1024;

/**
 * Reads the body of a unary call's answer: the gRPC prefix, then the one
 * message. A message smaller than `relayFrom` is assembled, copied once as
 * it comes; a larger one becomes an ArrivingAnswer, handed out (push's
 * result, once) as soon as its first HEAD_BYTES are in, so whoever takes
 * it can pass its bytes on as they arrive instead of holding them all.
 * Bytes after the message are ignored, as a unary call takes one message.
 */
export class UnaryAnswerReader {
  /** The prefix, when it comes split across chunks. */
  private prefix: Buffer | undefined;
  private prefixHave = 0;
  /** The message's length, once its prefix is in. */
  private length = -1;
  private received = 0;
  /** A small message, being assembled. */
  private small: Buffer | undefined;
  private arriving: ArrivingAnswer | undefined;
  private handedOut = false;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly relayFrom: number,
    private readonly hooks: AnswerHooks,
  ) {}

  /** Takes a chunk of the body; returns the arriving answer when it is ready to be handed out. Throws FrameError. */
  push(chunk: Buffer, loan: ReadLoan | undefined): ArrivingAnswer | undefined {
    let at = 0;
    if (this.length < 0) {
      if (this.prefixHave === 0 && chunk.length >= PREFIX_BYTES) {
        at = PREFIX_BYTES; // the usual case: read where it lies
        this.start(chunk[0]!, chunk.readUInt32BE(1));
      } else {
        const prefix = (this.prefix ??= Buffer.alloc(PREFIX_BYTES));
        at = Math.min(chunk.length, PREFIX_BYTES - this.prefixHave);
        chunk.copy(prefix, this.prefixHave, 0, at);
        this.prefixHave += at;
        if (this.prefixHave < PREFIX_BYTES) return undefined;
        this.start(prefix[0]!, prefix.readUInt32BE(1));
      }
    }
    const n = Math.min(chunk.length - at, this.length - this.received);
    if (n <= 0) return undefined;
    const bytes = chunk.subarray(at, at + n);
    if (this.small) {
      bytes.copy(this.small, this.received);
      this.received += n;
      return undefined;
    }
    const arriving = this.arriving!;
    if (this.received < arriving.head.length) bytes.copy(arriving.head, this.received);
    this.received += n;
    arriving.arrived(bytes, loan);
    if (this.handedOut || this.received < arriving.head.length) return undefined;
    this.handedOut = true;
    return arriving;
  }

  /**
   * The call ended (`error` undefined: etcd said OK). Returns the small
   * message, or the error the call fails with; an arriving answer that was
   * handed out hears the outcome itself (and undefined is returned).
   */
  finish(error: ConnectError | undefined): Buffer | ConnectError | undefined {
    if (!error && this.length < 0) {
      error = new ConnectError("protocol error: missing output message for unary method", Code.Internal);
    } else if (!error && this.received < this.length) {
      error = new ConnectError("unexpected EOF: the answer ended inside its message", Code.Internal);
    }
    if (this.arriving) {
      this.arriving.ended(error);
      if (this.handedOut) return undefined;
    }
    return error ?? this.small!;
  }

  private start(flags: number, length: number): void {
    if (flags & 1)
      throw new FrameError("compressed messages are not supported without grpc-encoding", Code.Unimplemented);
    if (length > this.maxMessageBytes) {
      throw new FrameError(
        `grpc: received message larger than max (${length} vs. ${this.maxMessageBytes})`,
        Code.ResourceExhausted,
      );
    }
    this.length = length;
    if (length < this.relayFrom) this.small = Buffer.allocUnsafe(length);
    else this.arriving = new ArrivingAnswer(length, Buffer.allocUnsafe(Math.min(length, HEAD_BYTES)), this.hooks);
  }
}
