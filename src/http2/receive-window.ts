/**
 * A receive window (RFC 9113 §6.9), a connection's or a stream's: what the
 * peer may still send, and what its reader has consumed since the last
 * WINDOW_UPDATE. Credit goes back in increments of at least half the
 * window, so a steady flow costs one WINDOW_UPDATE per half window. Each
 * method returns the increment to send now (0: none).
 */
export class ReceiveWindow {
  private available: number;
  private unacked = 0;

  constructor(private announced: number) {
    this.available = announced;
  }

  /** The window as last announced (the initial size, widened or grown since). */
  get size(): number {
    return this.announced;
  }

  /** Counts `n` received bytes against the window; false if the peer sent more than it allowed. */
  take(n: number): boolean {
    if (n > this.available) return false;
    this.available -= n;
    return true;
  }

  /** `n` received bytes were consumed: the increment due, once they make half the window. */
  credit(n: number): number {
    this.unacked += n;
    if (this.unacked < this.announced / 2) return 0;
    const increment = this.unacked;
    this.available += increment;
    this.unacked = 0;
    return increment;
  }

  /** Lets the peer send `extra` more now, and keeps the window that much larger. */
  grow(extra: number): number {
    if (extra <= 0) return 0;
    this.available += extra;
    this.announced += extra;
    return extra;
  }

  /** Raises what the peer may send to `size` at once, and keeps that as the window. */
  widen(size: number): number {
    const more = size - this.available;
    if (more <= 0) return 0;
    this.available += more;
    this.announced = size;
    return more;
  }
}
