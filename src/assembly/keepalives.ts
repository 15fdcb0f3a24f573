import { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import type { Metrics } from "../metrics.js";
import type { Upstream } from "../upstream/upstream.js";
import type { Feature } from "./lifecycle.js";

/** Lease keep-alive coalescing: every client's renewals on one upstream stream per identity. */
export function keepAliveCoalescing(
  upstream: Upstream,
  metrics: Metrics,
): { keepAlives: KeepAliveCoalescer } & Feature {
  const keepAlives = new KeepAliveCoalescer(upstream, metrics.lease);
  return { keepAlives, stop: () => keepAlives.close() };
}
