import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The proxy's one metrics registry. Names follow etcd's grpc proxy where
 * etcd has one (etcd_grpc_proxy_*); our own use the same prefix. Counters
 * only go up; gauges are current values.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metric = { registers: [registry] };
  return {
    registry,
    lease: {
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
      renewalsSent: new Counter({
        name: "etcd_grpc_proxy_lease_renewals_sent_total",
        help: "Keep-alive requests sent to etcd.",
        ...metric,
      }),
      answers: new Counter({
        name: "etcd_grpc_proxy_lease_keepalive_answers_total",
        help: "Keep-alive answers given to clients.",
        ...metric,
      }),
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
