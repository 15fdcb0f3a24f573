import * as grpc from "@grpc/grpc-js";
import type { EtcdGrpcClient } from "./grpc-client.js";

/** A WatchResponse as grpc-js hands it over (snake_case, int64 as strings). */
export interface WatchReply {
  header: { cluster_id: string; member_id: string; revision: string; raft_term: string } | null;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: Array<{
    /** 0 (PUT) or 1 (DELETE): grpc-js gives enums as numbers. */
    type: number;
    kv: { key: Buffer; value: Buffer; mod_revision: string; create_revision: string; version: string } | null;
    prev_kv: { key: Buffer; value: Buffer } | null;
  }>;
}

export interface CreateOptions {
  key: string | Buffer;
  range_end?: string | Buffer;
  start_revision?: number | bigint;
  prev_kv?: boolean;
  progress_notify?: boolean;
  filters?: Array<"NOPUT" | "NODELETE">;
  watch_id?: number;
  fragment?: boolean;
}

/**
 * A client Watch stream over grpc-js, an implementation independent of the
 * proxy: requests go out as written, responses queue up to be awaited.
 */
export class WatchStream {
  readonly replies: WatchReply[] = [];
  /** When each reply arrived (Date.now()), by index in `replies`. */
  readonly arrivals: number[] = [];
  private taken = 0;
  private waiter: (() => void) | undefined;
  ended: grpc.ServiceError | null | undefined; // undefined while open; null for a clean end
  private readonly call: grpc.ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>;

  constructor(client: EtcdGrpcClient, metadata = new grpc.Metadata()) {
    this.call = client.stream("Watch", "Watch", metadata);
    this.call.on("data", (r: WatchReply) => {
      this.replies.push(r);
      this.arrivals.push(Date.now());
      this.wake();
    });
    this.call.on("error", (err: grpc.ServiceError) => {
      this.ended = err;
      this.wake();
    });
    this.call.on("end", () => {
      this.ended ??= null;
      this.wake();
    });
  }

  create(options: CreateOptions): void {
    const { key, range_end, start_revision, ...rest } = options;
    this.call.write({
      create_request: {
        key: Buffer.from(key),
        ...(range_end !== undefined ? { range_end: Buffer.from(range_end) } : {}),
        ...(start_revision !== undefined ? { start_revision: String(start_revision) } : {}),
        ...rest,
      },
    });
  }

  cancel(watchId: number | string): void {
    this.call.write({ cancel_request: { watch_id: String(watchId) } });
  }

  requestProgress(): void {
    this.call.write({ progress_request: {} });
  }

  /** Half-closes: no more requests, the stream itself stays open. */
  endRequests(): void {
    this.call.end();
  }

  close(): void {
    this.call.cancel();
  }

  /** The next reply not yet taken; rejects after `timeoutMs` or when the stream ends. */
  async next(timeoutMs = 10_000): Promise<WatchReply> {
    const until = Date.now() + timeoutMs;
    while (this.taken >= this.replies.length) {
      if (this.ended !== undefined) throw new Error(`watch stream ended: ${this.ended?.details ?? "cleanly"}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error("no watch reply in time");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.replies[this.taken++]!;
  }

  /** Takes replies until `done` says stop; returns them all. */
  async until(done: (taken: WatchReply[]) => boolean, timeoutMs = 10_000): Promise<WatchReply[]> {
    const taken: WatchReply[] = [];
    const until = Date.now() + timeoutMs;
    while (!done(taken)) taken.push(await this.next(Math.max(1, until - Date.now())));
    return taken;
  }

  /** Resolves with the stream's final status once it ends. */
  async closed(timeoutMs = 20_000): Promise<grpc.ServiceError | null> {
    const until = Date.now() + timeoutMs;
    while (this.ended === undefined) {
      if (Date.now() > until) throw new Error("watch stream did not end");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.ended;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

/** The revisions of a reply's events. */
export function revisions(replies: WatchReply[]): number[] {
  return replies.flatMap((r) => r.events.map((e) => Number(e.kv!.mod_revision)));
}

/** Reads one of etcd's own metrics (summed over label sets) from a member's /metrics. */
export async function etcdMetric(clientUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${clientUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** Polls `check` until it holds, or throws with `what` after `timeoutMs`. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
