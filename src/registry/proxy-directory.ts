import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import { sleep } from "../util/abortable-sleep.js";
import { RETRY_MS } from "./registration.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { prefixEnd } from "../namespace/prefix.js";
import type { Upstream } from "../upstream/upstream.js";
import { internalWatch } from "../watch/internal-watch.js";
import type { WatchHub } from "../watch/watch-hub.js";

export interface ProxyEntry {
  name: string;
  addr: string;
}

/**
 * The proxies registered under --resolver-prefix, as MemberList reports
 * them: read once, then kept current by a watch on the prefix (through the
 * proxy's own watch hub). Entries are keyed by their etcd key, so a proxy
 * that goes away leaves. A record that does not decode is skipped.
 */
export class ProxyDirectory {
  private readonly entries = new Map<string, ProxyEntry>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly upstream: Upstream,
    private readonly watches: WatchHub,
    private readonly prefix: string,
    private readonly identity: ProxyIdentity,
    private readonly onProblem?: (message: string, err: unknown) => void,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopping.abort();
  }

  list(): ProxyEntry[] {
    return [...this.entries.values()];
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    const key = Buffer.from(`${this.prefix}/`);
    const rangeEnd = prefixEnd(key);
    while (!signal.aborted) {
      try {
        const read = await this.upstream.unary(
          KV.method.range,
          { key, rangeEnd, serializable: true },
          await this.identity.context(5000, signal),
        );
        this.entries.clear();
        for (const kv of read.kvs) this.put(kv.key, kv.value);
        await this.follow(key, rangeEnd, read.header!.revision + 1n, signal);
      } catch (err) {
        this.identity.refused(err);
        if (!signal.aborted) this.onProblem?.("could not track registered proxies; retrying", err);
      }
      await sleep(RETRY_MS, signal);
    }
  }

  /** Applies the prefix's changes from `fromRevision` until the watch ends. */
  private async follow(
    key: Uint8Array,
    rangeEnd: Uint8Array,
    fromRevision: bigint,
    signal: AbortSignal,
  ): Promise<void> {
    const watch = internalWatch((requests, ctx) => this.watches.serve(requests, ctx), {
      key,
      rangeEnd,
      startRevision: fromRevision,
      metadata: await this.identity.metadata(),
      signal,
    });
    for await (const response of watch) {
      for (const e of response.events) {
        if (e.type === Event_EventType.DELETE) this.entries.delete(keyOf(e.kv!.key));
        else this.put(e.kv!.key, e.kv!.value);
      }
      if (response.canceled) throw new Error(response.cancelReason || "the registration watch was canceled");
    }
  }

  private put(key: Uint8Array, value: Uint8Array): void {
    try {
      const record = JSON.parse(Buffer.from(value).toString()) as { Addr?: unknown; Metadata?: unknown };
      const meta = typeof record.Metadata === "string" ? (JSON.parse(record.Metadata) as { name?: unknown }) : {};
      if (typeof record.Addr !== "string") throw new Error("no Addr");
      this.entries.set(keyOf(key), { addr: record.Addr, name: typeof meta.name === "string" ? meta.name : "" });
    } catch (err) {
      this.onProblem?.(`skipping a registration record that does not decode (${keyOf(key)})`, err);
    }
  }
}

function keyOf(key: Uint8Array): string {
  return Buffer.from(key).toString("latin1");
}
