import { Code, ConnectError } from "@connectrpc/connect";
import type { ServerHttp2Stream } from "node:http2";
import type { Registry } from "prom-client";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { statusFields } from "../../grpc/wire.js";
import type { HealthReport } from "../../health/cluster-health.js";
import { registerPprof } from "./pprof.js";

export interface HttpEndpointDeps {
  /** The cluster's health as seen through the upstream (etcd's /health). */
  clusterHealth: () => Promise<HealthReport>;
  /** The proxy's own health, checked through its listener (etcd's /proxy/health). */
  proxyHealth: () => Promise<HealthReport>;
  /** Fully-qualified names of the gRPC services served, for Unimplemented's wording. */
  grpcServices: ReadonlySet<string>;
  /** The proxy's own metrics, served at /proxy/metrics. */
  metrics: Registry;
  /** An etcd member's metrics, served at /metrics as etcd's proxy does. */
  etcdMetrics: () => Promise<string>;
  /** --enable-pprof: serve /debug/pprof/ too. */
  pprof?: boolean;
}

/**
 * Plain HTTP paths on the client port:
 * - /health: etcd's JSON contract, GET only.
 * - /proxy/health: the same contract, for the proxy checked through its own listener.
 * - /livez: the process is up and serving.
 * - /readyz: the proxy can reach a healthy cluster.
 * - /metrics: an etcd member's own metrics (the one in use, else another).
 * - /proxy/metrics: the proxy's own Prometheus metrics.
 * Unknown paths answer 404, except gRPC calls, which get gRPC's Unimplemented,
 * and RPC paths called with a method other than POST or GET, which get 405.
 */
export function registerHttpEndpoints(
  app: FastifyInstance,
  deps: HttpEndpointDeps,
  /** Paths of the RPCs served with POST and GET only: other methods get 405. */
  rpcPaths: ReadonlySet<string> = new Set(),
): void {
  for (const [path, check] of [
    ["/health", deps.clusterHealth],
    ["/proxy/health", deps.proxyHealth],
  ] as const) {
    app.all(path, async (req, reply) => {
      if (req.method !== "GET") return reply.code(405).header("allow", "GET").send("Method Not Allowed\n");
      const report = await check();
      return reply
        .code(report.health ? 200 : 503)
        .type("application/json")
        .send(JSON.stringify({ health: String(report.health), reason: report.reason }));
    });
  }

  app.get("/metrics", async (_req, reply) => {
    try {
      return reply.type("text/plain; version=0.0.4").send(await deps.etcdMetrics());
    } catch {
      return reply.code(500).type("text/plain").send("Internal server error\n");
    }
  });

  app.get("/proxy/metrics", async (_req, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.metrics()),
  );

  if (deps.pprof) registerPprof(app);

  app.get("/livez", async (_req, reply) => reply.type("text/plain").send("ok\n"));

  app.get("/readyz", async (_req, reply) => {
    const report = await deps.clusterHealth();
    return reply
      .code(report.health ? 200 : 503)
      .type("text/plain")
      .send(report.health ? "ok\n" : `not ready: ${report.reason}\n`);
  });

  app.setNotFoundHandler((req, reply) => {
    if (rpcPaths.has(req.url.split("?", 1)[0]!)) return reply.code(405).send();
    if (isGrpc(req)) return unimplemented(req, reply, deps.grpcServices);
    return reply.code(404).type("text/plain").send("404 page not found\n");
  });
}

function isGrpc(req: FastifyRequest): boolean {
  return /^application\/grpc(\+|;|$)/.test(req.headers["content-type"] ?? "");
}

/** A Trailers-Only gRPC answer, worded as grpc-go words it. */
function unimplemented(req: FastifyRequest, reply: FastifyReply, services: ReadonlySet<string>): FastifyReply {
  const [, service = "", method = ""] = /^\/([^/]*)\/([^/?]*)/.exec(req.url) ?? [];
  const message = services.has(service)
    ? `unknown method ${method} for service ${service}`
    : `unknown service ${service}`;
  reply.hijack();
  const headers = {
    "content-type": "application/grpc",
    ...Object.fromEntries(statusFields(new ConnectError(message, Code.Unimplemented))),
  };
  const h2stream = (req.raw as { stream?: ServerHttp2Stream }).stream;
  if (h2stream) {
    // Trailers-Only: one HEADERS frame that ends the stream. writeHead+end
    // would add an empty DATA frame and leave clients without trailers.
    h2stream.respond({ ":status": 200, ...headers }, { endStream: true });
  } else {
    reply.raw.writeHead(200, headers);
    reply.raw.end();
  }
  return reply;
}
