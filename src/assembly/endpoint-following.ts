import type { ProxyConfig } from "../config/config.js";
import type { Log } from "../log.js";
import { memberEndpoints, syncEndpointsEvery } from "../upstream/endpoint-sync.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import { discoverEndpoints } from "../upstream/srv-discovery.js";
import type { EtcdUpstream } from "../upstream/etcd-upstream.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";

/**
 * Keeps the endpoints current: from the cluster's members with
 * --endpoints-auto-sync-interval, or, unlike etcd's proxy (which reads them
 * once), from the SRV records of --discovery-srv.
 */
export function endpointFollowing(
  config: Pick<ProxyConfig["etcd"], "autoSyncMs" | "discovery" | "tls">,
  etcd: EtcdUpstream,
  identity: ProxyIdentity,
  log: Log,
  problem: Problem,
): Feature {
  let stop: (() => void) | undefined;
  return {
    start() {
      if (config.autoSyncMs > 0) {
        stop = syncEndpointsEvery(etcd, config.autoSyncMs, memberEndpoints(etcd, identity), {
          changed: (change) => log.info(change, "synced the etcd endpoints from the cluster's members"),
          failed: (err) => problem("could not sync the etcd endpoints from the cluster's members; retrying", err),
        });
      } else if (config.discovery) {
        const discovery = config.discovery;
        stop = syncEndpointsEvery(
          etcd,
          DEFAULTS.srvRefreshMs,
          async () => (await discoverEndpoints(discovery, config.tls)).endpoints,
          {
            changed: (change) => log.info(change, "the SRV records changed; endpoints updated"),
            failed: (err) => problem("could not read the SRV records again; keeping the endpoints", err),
          },
        );
      }
    },
    stop: () => stop?.(),
  };
}
