/**
 * Views of one socket read into a buffer the socket reuses, lent past the
 * frames that carried them until the read is done (see
 * H2Connection.consumeReusedRead). A borrower that still holds a view then
 * copies it or, when it cannot (a socket write still in flight), keeps it:
 * the buffer is then the borrower's, and the connection reads into a new
 * one from then on.
 */
export interface Borrower {
  /** Lets go of the read's views (writing or copying them); false if something still holds one. */
  release(loan: ReadLoan): boolean;
}

export class ReadLoan {
  /** Made on the first borrow: most reads lend nothing past their frames. */
  private borrowers: Borrower[] | undefined;
  private settled = false;

  /** `memory`: the reused buffer's memory; a view is lent when it lies in it. */
  constructor(readonly memory: ArrayBufferLike) {}

  /** Whether `view` is of the lent memory (a copy made by a frame reader is not). */
  covers(view: Uint8Array): boolean {
    return view.buffer === this.memory;
  }

  /**
   * Registers `borrower` to be asked to let go when the read is done. False
   * once the read is done: the caller copies what it would keep.
   */
  borrow(borrower: Borrower): boolean {
    if (this.settled) return false;
    if (!this.borrowers) this.borrowers = [borrower];
    else if (!this.borrowers.includes(borrower)) this.borrowers.push(borrower);
    return true;
  }

  /** The read is done: every borrower lets go. True if the buffer may be read into again. */
  settle(): boolean {
    this.settled = true;
    let free = true;
    for (const borrower of this.borrowers ?? []) if (!borrower.release(this)) free = false;
    this.borrowers = undefined;
    return free;
  }
}
