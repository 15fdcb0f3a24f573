import { Cluster } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { sleep } from "../util/abortable-sleep.js";
import { normalizeEndpoint } from "./endpoint-pool.js";
import type { ProxyIdentity } from "./proxy-identity.js";
import type { EtcdUpstream } from "./upstream.js";

/** clientv3 gives each sync 5 s. */
const SYNC_TIMEOUT_MS = 5000;

export interface AutoSyncEvents {
  changed(change: { added: string[]; removed: string[] }): void;
  failed(err: unknown): void;
}

/**
 * --endpoints-auto-sync-interval: every `intervalMs`, asks etcd for its
 * members, as clientv3's autoSync does, and makes the client URLs of the
 * started, non-learner members the proxy's endpoints. Members added to the
 * cluster become endpoints; removed ones leave without failing the calls in
 * flight on them. A failed sync changes nothing and is tried again next
 * interval. Returns what stops it.
 */
export function startAutoSync(
  upstream: EtcdUpstream,
  identity: ProxyIdentity,
  intervalMs: number,
  events: AutoSyncEvents,
): () => void {
  const stopping = new AbortController();
  void (async () => {
    while (await sleep(intervalMs, stopping.signal)) {
      try {
        const ctx = await identity.context(SYNC_TIMEOUT_MS, stopping.signal);
        const { members } = await upstream.unary(Cluster.method.memberList, {}, ctx);
        const urls = members
          .filter((m) => m.name !== "" && !m.isLearner)
          .flatMap((m) => m.clientURLs)
          .map((url) => normalizeEndpoint(url));
        const change = upstream.syncEndpoints(urls);
        if (change.added.length > 0 || change.removed.length > 0) events.changed(change);
      } catch (err) {
        if (stopping.signal.aborted) return;
        identity.refused(err);
        events.failed(err);
      }
    }
  })();
  return () => stopping.abort();
}
