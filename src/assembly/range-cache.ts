import type { ProxyConfig } from "../config/config.js";
import { KvCache } from "../cache/kv-cache.js";
import type { Metrics } from "../metrics.js";
import type { OrderedUpstream } from "../ordering/ordered-upstream.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";
import type { KeyInterval } from "../util/key-range.js";

/** The range cache for serializable reads (--cache-max-bytes 0: none), emptied by a watch of everything. */
export function rangeCache(
  config: ProxyConfig["cache"],
  ordered: OrderedUpstream | undefined,
  identity: ProxyIdentity,
  watches: WatchHub,
  metrics: Metrics,
  problem: Problem,
  answeredElsewhere?: (range: KeyInterval) => boolean,
): { cache: KvCache | undefined } & Feature {
  if (config.maxBytes === 0) return { cache: undefined };
  const cache = new KvCache(
    {
      ...config,
      identity,
      watchRetryMs: DEFAULTS.cacheWatchRetryMs,
      watchIdleMs: DEFAULTS.cacheWatchIdleMs,
      revisionFloor: ordered && (() => ordered.revisionFloor()),
      onWatchProblem: (reason) => problem(reason),
      answeredElsewhere,
    },
    metrics.cache,
    (requests, ctx) => watches.serve(requests, ctx),
  );
  return { cache, stop: () => cache.close() };
}
