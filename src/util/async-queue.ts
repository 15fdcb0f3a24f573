/** What the producer asks of the queue: hooks on the consumer's progress, and when to wake it. */
export interface QueueOptions<T> {
  /** The consumer is taking `item`: the producer's last chance to finish it. */
  taking?(item: T): void;
  /** The consumer took an item and came back for more. */
  taken?(): void;
  /** The consumer stopped iterating, whether the queue ended or not. */
  finished?(): void;
  /**
   * Wake a waiting consumer on the next macrotask (setImmediate) rather
   * than at once, so that whatever the producer pushes in the current one
   * is still queued, and can still be added to, when the consumer comes.
   */
  wakeLater?: boolean;
}

/**
 * A single-consumer queue that is also an AsyncIterable: producers push,
 * end or fail it; the consumer iterates. Used to turn callbacks into the
 * response streams that handlers return. Taking an item is O(1) however
 * long the queue grows (a slow watch client can let thousands pile up).
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  /** Each item's weight, as given to push; their sum is `weight`. */
  private weights: number[] = [];
  /** Index of the next item to take; the slots before it are spent. */
  private head = 0;
  private totalWeight = 0;
  private waiting: (() => void) | undefined;
  /** Items pushed and taken so far: an item's sequence number tells whether it is still queued. */
  private pushedCount = 0;
  private takenCount = 0;
  private ended = false;
  private wakeScheduled = false;
  private failure: { error: unknown } | undefined;

  constructor(private readonly options: QueueOptions<T> = {}) {}

  /**
   * Queues `item`; `weight` (bytes, say) counts toward `weight` until the
   * consumer takes it. Returns the item's sequence number (-1 if the queue
   * was closed), for `holds` and `addWeight`.
   */
  push(item: T, weight = 0): number {
    if (this.ended || this.failure) return -1;
    this.items.push(item);
    this.weights.push(weight);
    this.totalWeight += weight;
    this.wake();
    return this.pushedCount++;
  }

  /** Whether the item pushed as `seq` is still waiting (the consumer has not taken it). */
  holds(seq: number): boolean {
    return seq >= this.takenCount && seq < this.pushedCount;
  }

  /** Puts `item` in the place of the still waiting item pushed as `seq` (see `holds`). */
  replace(seq: number, item: T): void {
    this.items[this.head + seq - this.takenCount] = item;
  }

  /** The producer added to an item that is still waiting (see `holds`). */
  addWeight(seq: number, weight: number): void {
    this.weights[this.head + seq - this.takenCount]! += weight;
    this.totalWeight += weight;
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

  /** The summed weight of the items not yet taken. */
  get weight(): number {
    return this.totalWeight;
  }

  /**
   * The one consumer's iterator. Written out rather than as an async
   * generator: every item of every stream passes here, and a generator
   * costs several promises per item where this costs one.
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    let yielded = false;
    let done = false;
    const finish = (): IteratorResult<T> => {
      if (!done) {
        done = true;
        this.options.finished?.();
      }
      return { done: true, value: undefined };
    };
    const step = (): IteratorResult<T> | undefined => {
      if (yielded) {
        yielded = false;
        this.options.taken?.();
      }
      if (this.head < this.items.length) {
        yielded = true;
        return { done: false, value: this.take() };
      }
      if (this.failure) {
        const { error } = this.failure;
        finish();
        throw error;
      }
      if (this.ended) return finish();
      return undefined;
    };
    const next = (): Promise<IteratorResult<T>> => {
      if (done) return Promise.resolve({ done: true, value: undefined });
      try {
        const result = step();
        if (result) return Promise.resolve(result);
      } catch (err) {
        return Promise.reject(err);
      }
      return new Promise((resolve, reject) => {
        const woken = () => {
          try {
            const result = step();
            if (result) resolve(result);
            else this.waiting = woken;
          } catch (err) {
            reject(err);
          }
        };
        this.waiting = woken;
      });
    };
    return {
      next,
      return: (value?: unknown) => {
        finish();
        return Promise.resolve({ done: true, value: value as T });
      },
    };
  }

  private take(): T {
    const item = this.items[this.head]!;
    this.totalWeight -= this.weights[this.head]!;
    this.items[this.head] = undefined as T; // let it be collected
    this.head++;
    this.takenCount++;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.weights.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.weights = this.weights.slice(this.head);
      this.head = 0;
    }
    this.options.taking?.(item);
    return item;
  }

  private wake(): void {
    if (this.waiting === undefined) return;
    if (!this.options.wakeLater) return this.wakeNow();
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(this.wakeNow);
  }

  private readonly wakeNow = (): void => {
    this.wakeScheduled = false;
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  };
}
