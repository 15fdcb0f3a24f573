import { create } from "@bufbuild/protobuf";
import type { KvCache } from "../cache/kv-cache.js";
import type { WatchRequest as EtcdWatchRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Maintenance, WatchCreateRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { LeaseService, ProxyService, StatusResponseSchema, WatchService } from "../gen/etcdproxy/v1/proxy_pb.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import type { Metrics } from "../metrics.js";
import type { Upstream } from "../upstream/upstream.js";
import { AsyncQueue } from "../util/async-queue.js";
import { proxyVersion } from "../version.js";
import type { WatchHub } from "../watch/watch-hub.js";
import type { ServiceHandlers } from "./handlers.js";

/**
 * Server-streaming watch for clients that cannot do bidi (browsers): the
 * request's watches become one client stream of the watch hub, with all of
 * etcd's semantics and the same coalescing. The stream stays open until
 * the client ends the call, which releases its upstream watches.
 */
export function browserWatchService(hub: WatchHub): ServiceHandlers<typeof WatchService> {
  return {
    watch: (request, ctx) => {
      const requests = new AsyncQueue<EtcdWatchRequest>();
      for (const watch of request.watches) {
        requests.push({
          $typeName: "etcdserverpb.WatchRequest",
          requestUnion: { case: "createRequest", value: create(WatchCreateRequestSchema, watch) },
        });
      }
      // Never half-closed: a bidi client's half-close keeps its watches too.
      ctx.signal.addEventListener("abort", () => requests.end(), { once: true });
      return hub.serve(requests, ctx);
    },
  };
}

/** One keep-alive at a time for clients without bidi streams, through the shared keep-alive stream. */
export function browserLeaseService(keepAlives: KeepAliveCoalescer): ServiceHandlers<typeof LeaseService> {
  return {
    keepAliveOnce: (request, ctx) => keepAlives.renewOnce(request.ID, ctx.forwardHeaders),
  };
}

export interface StatusSources {
  upstream: Upstream;
  watches: WatchHub;
  cache: KvCache | undefined;
  metrics: Metrics;
  namespace: string;
}

/** The proxy's own state, for its dashboard. */
export function proxyStatusService(s: StatusSources): ServiceHandlers<typeof ProxyService> {
  const version = proxyVersion();
  return {
    endpointStatus: async (_request, ctx) => ({
      endpoints: (await s.upstream.statusOfEach(ctx)).map((e) => ({
        url: e.url,
        status: e.status,
        error: e.error?.rawMessage ?? "",
        quotaBytes: BigInt(e.quotaBytes ?? 0),
      })),
    }),
    defragmentEndpoint: (request, ctx) =>
      s.upstream.unaryOnEndpoint(request.url, Maintenance.method.defragment, {}, ctx),
    status: async () => {
      const watch = s.watches.stats();
      const cache = s.cache?.stats;
      const lease = s.metrics.lease;
      return create(StatusResponseSchema, {
        version,
        namespace: s.namespace,
        endpoints: s.upstream.endpoints().map((e) => ({ url: e.url, healthy: e.up, current: e.current })),
        watch: {
          clientStreams: BigInt(watch.clientStreams),
          clientWatchers: BigInt(watch.clientWatchers),
          upstreamWatchers: BigInt(watch.upstreamWatchers),
          coalescedEvents: await valueOf(s.metrics.watch.events),
        },
        cache: {
          enabled: cache !== undefined,
          entries: BigInt(cache?.entries ?? 0),
          bytes: BigInt(cache?.bytes ?? 0),
          hits: await valueOf(s.metrics.cache.hits),
          misses: await valueOf(s.metrics.cache.misses),
        },
        lease: {
          clientStreams: await valueOf(lease.clientStreams),
          upstreamStreams: await valueOf(lease.upstreamStreams),
        },
      });
    },
  };
}

async function valueOf(metric: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<bigint> {
  const { values } = await metric.get();
  return BigInt(Math.round(values[0]?.value ?? 0));
}
