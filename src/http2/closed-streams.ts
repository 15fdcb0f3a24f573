/**
 * Peer streams that closed lately, and how (see ClosedBy), kept as a ring:
 * a map churned by every call cost GC work, and this is read only when a
 * frame comes for a stream that is no longer open.
 */
import type { ClosedBy } from "./limits.js";

export class ClosedStreams {
  private readonly ids: Int32Array;
  private readonly how: Uint8Array;
  /** Request bytes its content-length still promised when this side closed the stream first; -1 if none. */
  private readonly owedBytes: Float64Array;
  private next = 0;
  /** Ids up to this one may have closed and been forgotten. */
  forgottenBelow = 0;

  constructor(private readonly size: number) {
    this.ids = new Int32Array(size);
    this.how = new Uint8Array(size);
    this.owedBytes = new Float64Array(size);
  }

  /**
   * Remembers how `streamId` closed, forgetting the oldest past the ring's
   * size; `owed`: the request bytes its content-length still promised.
   */
  remember(streamId: number, how: ClosedBy, owed = -1): void {
    const at = this.next;
    const oldest = this.ids[at]!;
    if (oldest > this.forgottenBelow) this.forgottenBelow = oldest;
    this.ids[at] = streamId;
    this.how[at] = how === "peer" ? 1 : 2;
    this.owedBytes[at] = how === "peer" ? -1 : owed;
    this.next = (at + 1) % this.size;
  }

  /** The request bytes still owed on `streamId` (see remember), or -1. */
  owed(streamId: number): number {
    const at = this.ids.indexOf(streamId);
    return at < 0 || streamId === 0 ? -1 : this.owedBytes[at]!;
  }

  /**
   * Late DATA for a stream this side closed before its request ended: true
   * when it breaks the content-length the request declared (more than it
   * promised, or an end short of it), which is answered as on an open
   * stream, whichever end finished first.
   */
  breaksLength(streamId: number, bytes: number, endStream: boolean): boolean {
    const at = this.ids.indexOf(streamId);
    if (at < 0 || streamId === 0 || this.owedBytes[at]! < 0) return false;
    const left = this.owedBytes[at]! - bytes;
    const broken = left < 0 || (endStream && left !== 0);
    this.owedBytes[at] = broken || endStream ? -1 : left;
    return broken;
  }

  /** The peer reset `streamId` after this side closed it: from now on it counts as closed by the peer. */
  closedByPeerToo(streamId: number): void {
    const at = this.ids.indexOf(streamId);
    if (at < 0 || streamId === 0) return;
    this.how[at] = 1;
    this.owedBytes[at] = -1;
  }

  /** How `streamId` closed, if it is still remembered. */
  closedBy(streamId: number): ClosedBy | undefined {
    const at = this.ids.indexOf(streamId);
    if (at < 0 || streamId === 0) return undefined;
    return this.how[at] === 1 ? "peer" : "local-reset";
  }
}
