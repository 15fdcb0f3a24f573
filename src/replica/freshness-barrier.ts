/**
 * Group commit for revision checks: a read asks for etcd's current revision
 * and gets the answer of a check sent after it arrived. Reads that arrive
 * while a check is out wait for the next one, which then serves all of
 * them: N concurrent reads cost etcd about one check per round trip.
 * Checks are grouped by `batch` (the caller's identity and range, since a
 * check also proves the caller may read that range).
 */
import type { ResponseHeader } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";

type Check = () => Promise<ResponseHeader>;

interface Waiter {
  resolve(header: ResponseHeader): void;
  reject(err: unknown): void;
}

interface Batch {
  /** A check is out; those below wait for the next one. */
  inFlight: boolean;
  next: Waiter[];
  check: Check;
}

export class FreshnessBarrier {
  private readonly batches = new Map<string, Batch>();

  /** etcd's header from a check sent after this call. */
  current(batch: string, check: Check): Promise<ResponseHeader> {
    return new Promise((resolve, reject) => {
      let entry = this.batches.get(batch);
      if (!entry) this.batches.set(batch, (entry = { inFlight: false, next: [], check }));
      // The newest caller's check is sent: any of the batch's is the same question.
      entry.check = check;
      entry.next.push({ resolve, reject });
      if (!entry.inFlight && entry.next.length === 1) this.sendSoon(batch, entry);
    });
  }

  /** After the reads that arrive in this turn of the event loop (one socket read may carry many). */
  private sendSoon(batch: string, entry: Batch): void {
    entry.inFlight = true;
    setImmediate(() => this.send(batch, entry));
  }

  private send(batch: string, entry: Batch): void {
    const waiters = entry.next;
    entry.next = [];
    entry.inFlight = true;
    entry.check().then(
      (header) => {
        for (const w of waiters) w.resolve(header);
        this.done(batch, entry);
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
        this.done(batch, entry);
      },
    );
  }

  private done(batch: string, entry: Batch): void {
    entry.inFlight = false;
    if (entry.next.length > 0) this.sendSoon(batch, entry);
    else this.batches.delete(batch);
  }
}
