import type { ProxyConfig } from "../config/config.js";
import type { Metrics } from "../metrics.js";
import { PrefixReplica } from "../replica/prefix-replica.js";
import { ReplicaUpstream } from "../replica/replica-upstream.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";
import { contains, type KeyInterval } from "../util/key-range.js";

/**
 * The consistent cache (--consistent-cache-prefix): a replica per prefix,
 * kept by a watch through the hub, and the decorator that answers Ranges
 * from them. Without prefixes the upstream is returned as it is.
 */
export function consistentCache(
  config: ProxyConfig["consistentCache"],
  upstream: Upstream,
  watches: WatchHub,
  identity: ProxyIdentity,
  metrics: Metrics,
  problem: Problem,
): { upstream: Upstream; covers: (range: KeyInterval) => boolean } & Feature {
  if (config.prefixes.length === 0) return { upstream, covers: () => false };
  const m = metrics.consistentCache;
  const replicas: PrefixReplica[] = [];
  const held = () => replicas.reduce((sum, r) => sum + r.bytes, 0);
  const report = (r: PrefixReplica) => {
    m.bytes.set({ prefix: r.name }, r.bytes);
    m.keys.set({ prefix: r.name }, r.keys);
    m.revision.set({ prefix: r.name }, Number(r.revision));
  };
  for (const prefix of config.prefixes) {
    const replica = new PrefixReplica(
      Buffer.from(prefix),
      upstream,
      (requests, ctx) => watches.serve(requests, ctx),
      identity,
      { ...DEFAULTS.consistentCache, progressVouches: () => watches.progressVouches() },
      {
        fits: () => held() <= config.maxBytes,
        changed: report,
        interrupted: (r, why) => {
          m.reloads.inc({ prefix: r.name });
          problem(`consistent cache of "${r.name}": ${why}; its reads go to etcd until it has loaded again`);
        },
      },
    );
    replicas.push(replica);
  }
  const decorated = new ReplicaUpstream(upstream, replicas, DEFAULTS.consistentCache.waitMs, {
    answered: () => m.answers.inc(),
    fellBack: (reason) => m.fallbacks.inc({ reason }),
    sentCheck: () => m.checks.inc(),
    checked: (r, header) => {
      m.lag.set({ prefix: r.name }, Math.max(0, Number(header.revision - r.revision)));
    },
  });
  return {
    upstream: decorated,
    covers: (range) => replicas.some((r) => contains(r.interval, range)),
    start: () => {
      for (const r of replicas) r.start();
    },
    stop: () => {
      for (const r of replicas) r.stop();
    },
  };
}
