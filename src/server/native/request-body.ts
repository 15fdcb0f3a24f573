import { PREFIX_BYTES } from "../../grpc/wire.js";

/** Bodies smaller than this are joined at the end, as they always were. */
const ASSEMBLE_FROM_BYTES = 64 << 10;

/**
 * A unary call's framed request, held as it arrives. A large one (a 1 MiB
 * Put) is copied, as it comes, into one buffer of the size its gRPC prefix
 * announces, once half of it is here: the socket reads it arrived in are
 * then let go at once, instead of living (a megabyte outside V8's heap)
 * until a join at the end made a second megabyte. V8 starts a full
 * collection for every 64 MB of such memory, so this halves them on large
 * Puts. Waiting for half means a client that announces more than it sends
 * makes the proxy hold at most twice what it sent.
 */
export class RequestBody {
  private chunks: Buffer[] = [];
  private whole: Buffer | undefined;
  private have = 0;
  /** Bytes received. */
  size = 0;

  add(chunk: Buffer): void {
    this.size += chunk.length;
    const whole = this.whole;
    if (whole) {
      if (this.have + chunk.length <= whole.length) {
        chunk.copy(whole, this.have);
        this.have += chunk.length;
        return;
      }
      // More than announced: no longer one message, which the caller will refuse; keep the bytes as they are.
      this.chunks = [whole.subarray(0, this.have)];
      this.whole = undefined;
    }
    this.chunks.push(chunk);
    if (!whole) this.assembleIfHalfHere();
  }

  /** The body received so far, in one buffer. */
  bytes(): Buffer {
    if (this.whole) return this.have === this.whole.length ? this.whole : this.whole.subarray(0, this.have);
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }

  /** Bytes the body holds for what it received (for the bound above). */
  get held(): number {
    return this.whole ? this.whole.length : this.size;
  }

  private assembleIfHalfHere(): void {
    const first = this.chunks[0]!;
    if (first.length < PREFIX_BYTES || this.chunks.length === 1) return;
    const announced = PREFIX_BYTES + first.readUInt32BE(1);
    if (announced < ASSEMBLE_FROM_BYTES || this.size * 2 < announced || this.size > announced) return;
    const whole = Buffer.allocUnsafe(announced);
    let at = 0;
    for (const chunk of this.chunks) at += chunk.copy(whole, at);
    this.whole = whole;
    this.have = at;
    this.chunks = [];
  }
}
