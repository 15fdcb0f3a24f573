import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { HotCounter, HotHistogram, type HotCounterSeries, type HotHistogramSeries } from "./hot-metrics.js";

/**
 * The proxy's one metrics registry. Names follow etcd's grpc proxy where
 * etcd has one (etcd_grpc_proxy_*); our own use the same prefix. Counters
 * only go up; gauges are current values.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    grpc: grpcServerMetrics(registry),
    cache: rangeCacheMetrics(registry),
    watch: watchMetrics(registry),
    leasing: leasingMetrics(registry),
    lease: keepAliveMetrics(registry),
    consistentCache: consistentCacheMetrics(registry),
    coalescedRanges: new HotCounter(registry, {
      name: "etcd_grpc_proxy_coalesced_ranges_total",
      help: "Range requests that cost etcd no call of their own: they shared the call sent for identical Ranges.",
    }),
  };
}

/** go-grpc-middleware's server metrics, as etcd's proxy exports them. */
function grpcServerMetrics(registry: Registry) {
  return {
    started: new HotCounter(registry, {
      name: "grpc_server_started_total",
      labelled: true,
      help: "Total number of RPCs started on the server.",
    }),
    handled: new HotCounter(registry, {
      name: "grpc_server_handled_total",
      labelled: true,
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
    }),
    received: new HotCounter(registry, {
      name: "grpc_server_msg_received_total",
      labelled: true,
      help: "Total number of RPC stream messages received on the server.",
    }),
    sent: new HotCounter(registry, {
      name: "grpc_server_msg_sent_total",
      labelled: true,
      help: "Total number of gRPC stream messages sent by the server.",
    }),
    seconds: new HotHistogram(registry, {
      name: "grpc_server_handling_seconds",
      labelled: true,
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
  };
}

/** The range cache; the first three names are etcd's grpc proxy's (there, hits and misses are gauges). */
function rangeCacheMetrics(registry: Registry) {
  const metric = { registers: [registry] };
  return {
    hits: new HotCounter(registry, {
      name: "etcd_grpc_proxy_cache_hits_total",
      help: "Serializable Range requests answered from the cache.",
    }),
    misses: new HotCounter(registry, {
      name: "etcd_grpc_proxy_cache_misses_total",
      help: "Serializable Range requests the cache could not answer.",
    }),
    keys: new Gauge({
      name: "etcd_grpc_proxy_cache_keys_total",
      help: "Entries in the range cache.",
      ...metric,
    }),
    bytes: new Gauge({
      name: "etcd_grpc_proxy_cache_bytes",
      help: "Approximate bytes held by the range cache.",
      ...metric,
    }),
    hitAge: new HotHistogram(registry, {
      name: "etcd_grpc_proxy_cache_hit_age_seconds",
      help: "Age of cached answers when served: how long ago etcd produced them (an upper bound on their staleness).",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    }),
    watchInvalidations: new Counter({
      name: "etcd_grpc_proxy_cache_watch_invalidations_total",
      help: "Key changes made by other routes that reached the cache through its invalidation watch.",
      ...metric,
    }),
  };
}

/** Watch coalescing; the first two names are etcd's grpc proxy's. */
function watchMetrics(registry: Registry) {
  const metric = { registers: [registry] };
  return {
    coalescing: new Gauge({
      name: "etcd_grpc_proxy_watchers_coalescing_total",
      help: "Client watchers currently served by an upstream watch they share with another watcher.",
      ...metric,
    }),
    events: new Counter({
      name: "etcd_grpc_proxy_events_coalescing_total",
      help: "Watch responses delivered to more than one client watcher, counted once per extra watcher.",
      ...metric,
    }),
    clientWatchers: new Gauge({
      name: "etcd_grpc_proxy_watch_client_watchers",
      help: "Client watchers currently open.",
      ...metric,
    }),
    upstreamWatchers: new Gauge({
      name: "etcd_grpc_proxy_watch_upstream_watchers",
      help: "Watchers currently open toward etcd on behalf of clients.",
      ...metric,
    }),
    clientStreams: new Gauge({
      name: "etcd_grpc_proxy_watch_client_streams",
      help: "Client Watch streams currently open.",
      ...metric,
    }),
    historyReplays: new Counter({
      name: "etcd_grpc_proxy_watch_history_replays_total",
      help: "Responses served from the proxy's recent-event history instead of a new upstream watch.",
      ...metric,
    }),
    slowConsumerSetAside: new Counter({
      name: "etcd_grpc_proxy_watch_slow_consumer_set_aside_total",
      help: "Client watchers taken off their shared watch because their stream had too much unread; they catch up later.",
      ...metric,
    }),
    upstreamReconnects: new Counter({
      name: "etcd_grpc_proxy_watch_upstream_reconnects_total",
      help: "Upstream Watch streams reopened after their endpoint failed.",
      ...metric,
    }),
  };
}

function leasingMetrics(registry: Registry) {
  const metric = { registers: [registry] };
  return {
    localReads: new HotCounter(registry, {
      name: "etcd_grpc_proxy_leasing_local_reads_total",
      help: "Range requests answered from keys the proxy owns, without asking etcd.",
    }),
    revoked: new Counter({
      name: "etcd_grpc_proxy_leasing_revoked_total",
      help: "Owned keys given up because a writer asked for them.",
      ...metric,
    }),
  };
}

function keepAliveMetrics(registry: Registry) {
  const metric = { registers: [registry] };
  return {
    clientStreams: new Gauge({
      name: "etcd_grpc_proxy_lease_keepalive_client_streams",
      help: "Client LeaseKeepAlive streams currently open.",
      ...metric,
    }),
    upstreamStreams: new Gauge({
      name: "etcd_grpc_proxy_lease_keepalive_upstream_streams",
      help: "LeaseKeepAlive streams currently open toward etcd.",
      ...metric,
    }),
    renewalsSent: new HotCounter(registry, {
      name: "etcd_grpc_proxy_lease_renewals_sent_total",
      help: "Keep-alive requests sent to etcd.",
    }),
    stalledStreams: new Counter({
      name: "etcd_grpc_proxy_lease_keepalive_stalled_total",
      help: "Upstream LeaseKeepAlive streams abandoned because etcd left their renewals unanswered, their renewals re-sent on a new stream.",
      ...metric,
    }),
    answers: new HotCounter(registry, {
      name: "etcd_grpc_proxy_lease_keepalive_answers_total",
      help: "Keep-alive answers given to clients.",
    }),
  };
}

/** The consistent cache (--consistent-cache-prefix): one replica per prefix, labelled by it. */
function consistentCacheMetrics(registry: Registry) {
  const metric = { registers: [registry] };
  return {
    bytes: new Gauge({
      name: "etcd_grpc_proxy_consistent_cache_bytes",
      help: "Approximate bytes held by each prefix's replica.",
      labelNames: ["prefix"] as const,
      ...metric,
    }),
    keys: new Gauge({
      name: "etcd_grpc_proxy_consistent_cache_keys",
      help: "Keys held by each prefix's replica.",
      labelNames: ["prefix"] as const,
      ...metric,
    }),
    revision: new Gauge({
      name: "etcd_grpc_proxy_consistent_cache_revision",
      help: "The revision each prefix's replica has applied (0 while it is not serving).",
      labelNames: ["prefix"] as const,
      ...metric,
    }),
    lag: new Gauge({
      name: "etcd_grpc_proxy_consistent_cache_lag_revisions",
      help: "How many revisions the replica was behind etcd when the latest read's check answered.",
      labelNames: ["prefix"] as const,
      ...metric,
    }),
    reloads: new Counter({
      name: "etcd_grpc_proxy_consistent_cache_reloads_total",
      help: "Times a replica stopped serving to load again (compaction, a lost watch, a refusal, the byte budget).",
      labelNames: ["prefix"] as const,
      ...metric,
    }),
    checks: new Counter({
      name: "etcd_grpc_proxy_consistent_cache_checks_total",
      help: "Revision checks sent to etcd; one serves every read of a caller and range that arrived before it was sent.",
      ...metric,
    }),
    answers: new HotCounter(registry, {
      name: "etcd_grpc_proxy_consistent_cache_answers_total",
      help: "Range requests answered from a replica.",
    }),
    fallbacks: new Counter({
      name: "etcd_grpc_proxy_consistent_cache_fallbacks_total",
      help: "Range requests inside a replicated prefix that went to etcd instead, by reason.",
      labelNames: ["reason"] as const,
      ...metric,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Reports each upstream endpoint's health (1 up, 0 down) at every scrape. */
export function observeEndpoints(metrics: Metrics, endpoints: () => Array<{ url: string; up: boolean }>): void {
  new Gauge({
    name: "etcd_grpc_proxy_upstream_endpoint_up",
    help: "Whether the proxy considers an etcd endpoint healthy (1) or backing off after a failure (0).",
    labelNames: ["endpoint"],
    registers: [metrics.registry],
    collect() {
      for (const e of endpoints()) this.set({ endpoint: e.url }, e.up ? 1 : 0);
    },
  });
}

/** Reports how many keys leasing owns at every scrape. */
export function observeLeasing(metrics: Metrics, owned: () => number): void {
  new Gauge({
    name: "etcd_grpc_proxy_leasing_owned_keys",
    help: "Keys this proxy owns under --experimental-leasing-prefix.",
    registers: [metrics.registry],
    collect() {
      this.set(owned());
    },
  });
}

const GRPC_TYPE = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
} as const;

/** What a lane reports about one call; `end` takes the final gRPC status (0 for OK). */
export interface RpcRecord {
  received(): void;
  /** `count` messages went out (a lane may report a batch at once). */
  sent(count?: number): void;
  end(code: number): void;
}

/** Called when a call starts; what it returns hears how the call goes. */
export type RpcObserver = (method: DescMethod) => RpcRecord;

/** One method's label set, bound once: prom-client then skips hashing labels on every call. */
interface MethodSeries {
  started: HotCounterSeries;
  received: HotCounterSeries;
  sent: HotCounterSeries;
  seconds: HotHistogramSeries;
  handled: Map<number, HotCounterSeries>;
  labels: Record<"grpc_type" | "grpc_service" | "grpc_method", string>;
}

const seriesByMethod = new WeakMap<Metrics["grpc"], WeakMap<DescMethod, MethodSeries>>();

function seriesFor(grpc: Metrics["grpc"], method: DescMethod): MethodSeries {
  let byMethod = seriesByMethod.get(grpc);
  if (!byMethod) seriesByMethod.set(grpc, (byMethod = new WeakMap()));
  const known = byMethod.get(method);
  if (known) return known;
  const labels = {
    grpc_type: GRPC_TYPE[method.methodKind],
    grpc_service: method.parent.typeName,
    grpc_method: method.name,
  };
  const series: MethodSeries = {
    started: grpc.started.series(labels),
    received: grpc.received.series(labels),
    sent: grpc.sent.series(labels),
    seconds: grpc.seconds.series(labels),
    handled: new Map(),
    labels,
  };
  byMethod.set(method, series);
  return series;
}

/**
 * Starts recording one call. Both lanes (native and Connect) report through
 * this, so the counters mean the same whichever lane served the call.
 */
export function recordRpc(grpc: Metrics["grpc"], method: DescMethod): RpcRecord {
  return new CallRecord(grpc, seriesFor(grpc, method));
}

/** One call's record: a single object per call, as every call of every lane makes one. */
class CallRecord implements RpcRecord {
  private readonly startedAt = performance.now();
  private ended = false;

  constructor(
    private readonly grpc: Metrics["grpc"],
    private readonly series: MethodSeries,
  ) {
    series.started.inc();
  }

  received(): void {
    this.series.received.inc();
  }

  sent(count = 1): void {
    this.series.sent.inc(count);
  }

  end(code: number): void {
    if (this.ended) return;
    this.ended = true;
    const series = this.series;
    series.seconds.observe((performance.now() - this.startedAt) / 1000);
    let handled = series.handled.get(code);
    if (!handled) {
      const grpcCode = code === 0 ? "OK" : (Code[code] ?? String(code));
      handled = this.grpc.handled.series({ ...series.labels, grpc_code: grpcCode });
      series.handled.set(code, handled);
    }
    handled.inc();
  }
}
