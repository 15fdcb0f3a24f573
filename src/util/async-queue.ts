/**
 * A single-consumer queue that is also an AsyncIterable: producers push,
 * end or fail it; the consumer iterates. Used to turn callbacks into the
 * response streams that handlers return.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  /** Each item's weight, as given to push; their sum is `weight`. */
  private readonly weights: number[] = [];
  private totalWeight = 0;
  private waiting: (() => void) | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;

  /** Queues `item`; `weight` (bytes, say) counts toward `weight` until the consumer takes it. */
  push(item: T, weight = 0): void {
    if (this.ended || this.failure) return;
    this.items.push(item);
    this.weights.push(weight);
    this.totalWeight += weight;
    this.wake();
  }

  /** No more items; the consumer finishes after draining what is queued. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** The consumer throws `error` after draining what is queued. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.wake();
  }

  get size(): number {
    return this.items.length;
  }

  /** The summed weight of the items not yet taken. */
  get weight(): number {
    return this.totalWeight;
  }

  /** True once end() or fail() was called. */
  get closed(): boolean {
    return this.ended || this.failure !== undefined;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        this.totalWeight -= this.weights.shift()!;
        yield this.items.shift()!;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
}
