/**
 * Peer streams that closed lately, and how (see ClosedBy), kept as a ring:
 * a map churned by every call cost GC work, and this is read only when a
 * frame comes for a stream that is no longer open.
 */
import type { ClosedBy } from "./limits.js";

export class ClosedStreams {
  private readonly ids: Int32Array;
  private readonly how: Uint8Array;
  private next = 0;
  /** Ids up to this one may have closed and been forgotten. */
  forgottenBelow = 0;

  constructor(private readonly size: number) {
    this.ids = new Int32Array(size);
    this.how = new Uint8Array(size);
  }

  /** Remembers how `streamId` closed, forgetting the oldest past the ring's size. */
  remember(streamId: number, how: ClosedBy): void {
    const at = this.next;
    const oldest = this.ids[at]!;
    if (oldest > this.forgottenBelow) this.forgottenBelow = oldest;
    this.ids[at] = streamId;
    this.how[at] = how === "peer" ? 1 : 2;
    this.next = (at + 1) % this.size;
  }

  /** The peer reset `streamId` after this side closed it: from now on it counts as closed by the peer. */
  closedByPeerToo(streamId: number): void {
    const at = this.ids.indexOf(streamId);
    if (at >= 0 && streamId !== 0) this.how[at] = 1;
  }

  /** How `streamId` closed, if it is still remembered. */
  closedBy(streamId: number): ClosedBy | undefined {
    const at = this.ids.indexOf(streamId);
    if (at < 0 || streamId === 0) return undefined;
    return this.how[at] === 1 ? "peer" : "local-reset";
  }
}
