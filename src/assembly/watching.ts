import type { ProxyConfig } from "../config/config.js";
import type { Log } from "../log.js";
import type { Metrics } from "../metrics.js";
import { watchJoinCheck, watchUpstream } from "../services/watch.js";
import type { EtcdVersion } from "../upstream/etcd-http.js";
import type { Upstream } from "../upstream/upstream.js";
import { WatchHub } from "../watch/watch-hub.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";

/** Watch coalescing: every client watch of a range and identity on one upstream watch. */
export function watching(
  config: ProxyConfig["watch"],
  upstream: Upstream,
  version: EtcdVersion,
  metrics: Metrics,
  log: Log,
): { watches: WatchHub } & Feature {
  const watches = new WatchHub(
    watchUpstream(upstream),
    watchJoinCheck(upstream),
    {
      bufferBytes: config.bufferBytes,
      batchBytes: DEFAULTS.watchBatchBytes,
      fragmentBytes: config.maxSendBytes + DEFAULTS.watchFragmentOverheadBytes,
      history: { ...DEFAULTS.watchHistory, replayBatchBytes: DEFAULTS.watchBatchBytes },
      reconnectMinMs: DEFAULTS.backoffMinMs,
      reconnectMaxMs: DEFAULTS.backoffMaxMs,
      progressRetryMs: DEFAULTS.watchProgressRetryMs,
      progressOrdered: () => version.ordersProgress(),
      onReconnect: (err) => log.warn({ err: String(err) }, "upstream watch stream lost; resuming on another endpoint"),
    },
    metrics.watch,
  );
  return { watches, stop: () => watches.close() };
}
