import type { ProxyConfig } from "./config/config.js";
import { createLog, type Log } from "./log.js";
import { createMetrics } from "./metrics.js";
import { etcdServices } from "./services/index.js";
import { withPayloadLogging } from "./services/payload-log.js";
import { rpcTable } from "./services/rpc-table.js";
import type { Upstream } from "./upstream/upstream.js";
import { clientPort, metricsPort, type ClientPort } from "./assembly/client-port.js";
import { endpointFollowing } from "./assembly/endpoint-following.js";
import { connectToEtcd } from "./assembly/etcd-connection.js";
import { consistentCache } from "./assembly/consistent-cache.js";
import { keepAliveCoalescing } from "./assembly/keepalives.js";
import { leasing } from "./assembly/leasing.js";
import { Lifecycle } from "./assembly/lifecycle.js";
import { warnOnce } from "./assembly/problems.js";
import { rangeCache } from "./assembly/range-cache.js";
import { registration } from "./assembly/registration.js";
import { watching } from "./assembly/watching.js";

export interface RunningProxy {
  log: Log;
  upstream: Upstream;
  /** The address actually listened on, host:port. */
  address: string;
  close(): Promise<void>;
}

/**
 * The composition root: the proxy is this list of features, each built
 * from its own part of the config, started in this order and stopped in the
 * reverse one (the registration record first, the way to etcd last).
 */
export async function startProxy(config: ProxyConfig): Promise<RunningProxy> {
  const log = createLog(config.log.level);
  const problem = warnOnce(log);
  const running = new Lifecycle();
  try {
    const metrics = createMetrics();
    const { etcd, ordered, upstream, identity, version, etcdHttp } = await running.add(
      await connectToEtcd(config.etcd, config.namespace, metrics, log, problem),
    );
    const { keepAlives } = await running.add(keepAliveCoalescing(upstream, metrics));
    const { watches } = await running.add(watching(config.watch, upstream, version, metrics, log));
    const replicated = await running.add(
      consistentCache(config.consistentCache, upstream, watches, identity, metrics, problem),
    );
    // The range cache leaves the consistent cache's prefixes to it.
    const { cache } = await running.add(
      rangeCache(config.cache, ordered, identity, watches, metrics, problem, replicated.covers),
    );
    const leased = await running.add(
      leasing(config.leasing, replicated.upstream, keepAlives, identity, metrics, problem),
    );

    let port: ClientPort | undefined;
    const { listen, advertiseClientUrl } = config.clientPort;
    const advertise = () => advertiseClientUrl ?? port?.address() ?? `${listen.host}:${listen.port}`;
    const registered = registration(config.registration, advertise, upstream, keepAlives, watches, identity, problem);
    const { directory } = registered;
    const services = etcdServices(replicated.upstream, {
      namespace: config.namespace,
      cache,
      leasing: leased.leasing,
      keepAlives,
      watches,
      metrics,
      cluster: {
        get advertiseClientUrl() {
          return advertise();
        },
        scheme: config.clientPort.tls ? "https" : "http",
        registered: directory ? () => directory.list() : undefined,
      },
    });
    // What every surface serves: the services, their payloads logged when asked.
    const served = config.log.payloads
      ? withPayloadLogging(services, (fields, message) => log.info(fields, message))
      : services;
    port = await clientPort(
      config.clientPort,
      { services: served, rpcs: rpcTable(served), upstream, identity, version, metrics, etcdHttp },
      log,
    );
    await running.add(port);
    await running.add(metricsPort(config.clientPort, port));
    await running.add(registered);
    await running.add(endpointFollowing(config.etcd, etcd, identity, log, problem));
    return { log, upstream, address: port.address(), close: () => running.stop() };
  } catch (err) {
    await running.stop();
    throw err;
  }
}
