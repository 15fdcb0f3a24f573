import type { ProxyConfig } from "../config/config.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import { LeasingKv } from "../leasing/leasing-kv.js";
import { observeLeasing, type Metrics } from "../metrics.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";

/** --experimental-leasing-prefix: etcd's leasing protocol; its records live inside the namespace, as with etcd's proxy. */
export function leasing(
  config: ProxyConfig["leasing"],
  upstream: Upstream,
  keepAlives: KeepAliveCoalescer,
  identity: ProxyIdentity,
  metrics: Metrics,
  problem: Problem,
): { leasing: LeasingKv | undefined } & Feature {
  if (!config.prefix) return { leasing: undefined };
  const kv = new LeasingKv(
    upstream,
    keepAlives,
    { prefix: Buffer.from(config.prefix), identity, onProblem: problem },
    metrics.leasing,
  );
  observeLeasing(metrics, () => kv.owned);
  // Stopped before the keep-alives: its revoke frees the keys it owns for other writers.
  return { leasing: kv, stop: () => kv.close() };
}
