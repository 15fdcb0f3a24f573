import { Cluster } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { sleep } from "../util/abortable-sleep.js";
import { normalizeEndpoint } from "./endpoint-pool.js";
import type { ProxyIdentity } from "./proxy-identity.js";
import type { EtcdUpstream } from "./etcd-upstream.js";

/** clientv3 gives each member sync 5 s. */
const SYNC_TIMEOUT_MS = 5000;

export interface EndpointSyncEvents {
  changed(change: { added: string[]; removed: string[] }): void;
  failed(err: unknown): void;
}

/**
 * Every `intervalMs`, asks `find` for the endpoints and makes them the
 * upstream's: new ones connect, kept ones keep their connection and
 * health, and those that left are retired without failing the calls in
 * flight on them. A failed or empty answer changes nothing and is asked
 * again next interval. Returns what stops it.
 */
export function syncEndpointsEvery(
  upstream: EtcdUpstream,
  intervalMs: number,
  find: (signal: AbortSignal) => Promise<string[]>,
  events: EndpointSyncEvents,
): () => void {
  const stopping = new AbortController();
  void (async () => {
    while (await sleep(intervalMs, stopping.signal)) {
      try {
        const change = upstream.syncEndpoints(await find(stopping.signal));
        if (change.added.length > 0 || change.removed.length > 0) events.changed(change);
      } catch (err) {
        if (!stopping.signal.aborted) events.failed(err);
      }
    }
  })();
  return () => stopping.abort();
}

/**
 * --endpoints-auto-sync-interval's source, as clientv3's autoSync reads it:
 * the client URLs of the cluster's started, non-learner members, asked as
 * the proxy's own user (etcd 3.5.28 and later list members only to
 * authenticated callers).
 */
export function memberEndpoints(upstream: EtcdUpstream, identity: ProxyIdentity) {
  return async (signal: AbortSignal): Promise<string[]> => {
    try {
      const { members } = await upstream.unary(
        Cluster.method.memberList,
        {},
        await identity.context(SYNC_TIMEOUT_MS, signal),
      );
      return members
        .filter((m) => m.name !== "" && !m.isLearner)
        .flatMap((m) => m.clientURLs)
        .map((url) => normalizeEndpoint(url));
    } catch (err) {
      identity.refused(err);
      throw err;
    }
  };
}
