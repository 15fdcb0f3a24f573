import { callerIdentity, type CallContext } from "../call-context.js";
import type { WatchRequest, WatchResponse } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Metrics } from "../metrics.js";
import type { HistoryLimits } from "./event-history.js";
import { WatchChannel, type ChannelEvents, type WatchUpstream } from "./watch-channel.js";
import { WatchSession, type JoinCheck, type SessionEvents, type SessionLimits } from "./watch-session.js";

export interface WatchHubOptions extends SessionLimits {
  history: HistoryLimits;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  progressRetryMs: number;
  /** Whether etcd orders its progress answers after owed events (ChannelOptions.progressOrdered). */
  progressOrdered?: () => boolean;
  onReconnect?: (err: unknown) => void;
}

/**
 * Watch coalescing, the proxy's reason to exist: every client Watch stream
 * becomes a session on its identity's channel, and client watchers of one
 * key range share one upstream watch. Transport-free: the Watch service
 * hands it typed requests and a call context.
 */
export class WatchHub {
  private readonly channels = new Map<string, WatchChannel>();
  private clientWatchers = 0;
  private upstreamWatchers = 0;
  private clientStreams = 0;
  private readonly channelEvents: ChannelEvents;

  constructor(
    private readonly upstream: WatchUpstream,
    private readonly checkJoin: JoinCheck,
    private readonly options: WatchHubOptions,
    private readonly metrics: Metrics["watch"],
  ) {
    this.channelEvents = {
      sharedWatchStarted: () => this.countUpstream(1),
      sharedWatchStopped: () => this.countUpstream(-1),
      coalescedDeliveries: (n) => n > 0 && metrics.events.inc(n),
      replayed: (n) => n > 0 && metrics.historyReplays.inc(n),
      reconnecting: (err) => {
        metrics.upstreamReconnects.inc();
        options.onReconnect?.(err);
      },
    };
  }

  /**
   * Whether a progress answer from this hub vouches for every event before
   * it. On etcd before 3.4.25 and 3.5.8 it cannot: etcd sends those answers
   * on a path of their own, and under back-pressure even the second answer
   * the hub confirms the first with can overtake events etcd still owes.
   */
  progressVouches(): boolean {
    return this.options.progressOrdered?.() ?? false;
  }

  /** Serves one client Watch stream. */
  serve(requests: AsyncIterable<WatchRequest>, ctx: CallContext): AsyncIterable<WatchResponse> {
    const caller = callerIdentity(ctx.forwardHeaders);
    const identity = caller.key;
    let channel = this.channels.get(identity);
    if (!channel) {
      channel = new WatchChannel(
        this.upstream,
        caller.forwardHeaders,
        caller.requireLeader,
        this.options,
        this.channelEvents,
      );
      this.channels.set(identity, channel);
    }
    const owner = channel;
    const events: SessionEvents = {
      watcherAdded: () => this.countClient(1),
      watcherRemoved: () => this.countClient(-1),
      setAside: (n) => this.metrics.slowConsumerSetAside.inc(n),
      closed: () => {
        this.clientStreams--;
        this.metrics.clientStreams.dec();
        if (owner.idle && this.channels.get(identity) === owner) {
          this.channels.delete(identity);
          owner.close();
        }
      },
    };
    this.clientStreams++;
    this.metrics.clientStreams.inc();
    return new WatchSession(channel, ctx, this.options, this.checkJoin, events).serve(requests);
  }

  /** Current counts, for the proxy's status page. */
  stats(): { clientStreams: number; clientWatchers: number; upstreamWatchers: number } {
    return {
      clientStreams: this.clientStreams,
      clientWatchers: this.clientWatchers,
      upstreamWatchers: this.upstreamWatchers,
    };
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  private countClient(delta: number): void {
    this.clientWatchers += delta;
    this.metrics.clientWatchers.set(this.clientWatchers);
    this.updateCoalescing();
  }

  private countUpstream(delta: number): void {
    this.upstreamWatchers += delta;
    this.metrics.upstreamWatchers.set(this.upstreamWatchers);
    this.updateCoalescing();
  }

  private updateCoalescing(): void {
    this.metrics.coalescing.set(Math.max(0, this.clientWatchers - this.upstreamWatchers));
  }
}
