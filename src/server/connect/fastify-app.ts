import { cors as connectCors } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import fastifyCors from "@fastify/cors";
import { fastify, LogController, type FastifyInstance } from "fastify";
import * as http from "node:http";
import * as https from "node:https";
import type { Admission } from "../edge/admission.js";
import type { ServerTls } from "../../config/config.js";
import type { Log } from "../../log.js";
import type { RpcObserver } from "../../metrics.js";
import type { ServiceBinding } from "../../services/handlers.js";
import type { Rpc } from "../../services/rpc-table.js";
import { registerServices } from "./connect-adapter.js";
import { answerJsonFromBinary, readJsonNumbersExactly } from "./connect-json.js";
import { registerNativeGrpcWire } from "./connect-grpc-wire.js";
import type { EtcdVersion } from "../../upstream/etcd-http.js";
import { registerGateway } from "../gateway/gateway.js";
import { registerDashboard } from "../dashboard/dashboard.js";
import { registerHttpEndpoints, type HttpEndpointDeps } from "../operator/http-endpoints.js";
import { admitted, createListener, type ListenerOptions, type RequestHandler } from "../edge/listener.js";

export interface AppOptions extends ListenerOptions {
  /** Largest request message accepted from a client. */
  readMaxBytes: number;
  /** Every RPC served, by gRPC path (services/rpc-table.ts). */
  rpcs: ReadonlyMap<string, Rpc>;
  /** The etcd in use, whose HTTP answers the gateway matches. */
  etcdVersion: EtcdVersion;
  /** Aborting it ends the Connect lane's calls (graceful shutdown). */
  shutdownSignal: AbortSignal;
  /** Hears about every call the Connect lane serves (metrics, debug logs). */
  observe?: RpcObserver;
  /** The proxy's log, which Fastify's own lines join. */
  log: Log;
  /** Browser origins allowed to call from other sites (--cors-allowed-origins); none means same-origin only. */
  corsAllowedOrigins: string[];
}

/**
 * Node's HTTP/1.1 timeouts. Fastify only applies its own defaults when it
 * builds the server itself, so with serverFactory they are set here: headers
 * must arrive promptly (slowloris), while long-lived response streams such as
 * watches are not cut (requestTimeout only covers receiving the request).
 */
const HTTP1_TIMEOUTS = { headersTimeout: 60_000, requestTimeout: 300_000, keepAliveTimeout: 72_000 };

export async function createApp(
  services: ServiceBinding[],
  endpoints: HttpEndpointDeps,
  options: AppOptions,
): Promise<FastifyInstance> {
  const app = fastify({
    loggerInstance: options.log,
    // One log line per HTTP request would drown the logs of a busy proxy.
    logController: new LogController({ disableRequestLogging: true }),
    serverFactory: (handler) => {
      const server = createListener(handler as RequestHandler, options);
      Object.assign(server as http.Server, HTTP1_TIMEOUTS);
      return server;
    },
  });

  if (options.corsAllowedOrigins.length > 0) {
    // Connect's own lists of what its protocols send and read, plus etcd's auth header.
    await app.register(fastifyCors, {
      origin: options.corsAllowedOrigins.includes("*") ? "*" : options.corsAllowedOrigins,
      methods: [...connectCors.allowedMethods],
      allowedHeaders: [...connectCors.allowedHeaders, "token", "authorization"],
      exposedHeaders: [...connectCors.exposedHeaders],
      maxAge: 7200,
    });
  }
  registerNativeGrpcWire(app, () => options.etcdVersion.knownLine());
  await app.register(async (scope) => {
    // connect-fastify routes each procedure for all nine methods Fastify
    // knows. Only those Connect serves are routed (POST, and GET for the
    // cheap read-only RPCs): the others would only cost router memory
    // (find-my-way compiles matchers for each), and the not-found handler
    // answers them 405, as Connect does.
    scope.addHook("onRoute", (route) => {
      route.method = options.rpcs.get(route.url)?.servedOverGet ? ["POST", "GET"] : "POST";
    });
    await scope.register(fastifyConnectPlugin, {
      routes: (router) => {
        registerServices(router, services, options.observe);
        // Inside the exact numbers: what it parses has its long integers quoted already.
        answerJsonFromBinary(router, options.readMaxBytes);
        readJsonNumbersExactly(router, options.readMaxBytes);
      },
      readMaxBytes: options.readMaxBytes,
      shutdownSignal: options.shutdownSignal,
    });
  });
  await registerGateway(app, {
    rpcs: options.rpcs,
    etcd: options.etcdVersion,
    shutdown: options.shutdownSignal,
    observe: options.observe,
  });
  if (!(await registerDashboard(app))) app.log.warn("the dashboard was not built (npm run build); / serves nothing");
  registerHttpEndpoints(app, endpoints, new Set(options.rpcs.keys()));
  return app;
}

/**
 * --metrics-addr: a plain HTTP (or HTTPS, with the client port's
 * certificate) listener for the same HTTP paths, and no gRPC.
 */
export async function startMetricsListener(
  addr: { host: string; port: number; https: boolean },
  tls: ServerTls | undefined,
  deps: HttpEndpointDeps,
  admission: Admission,
): Promise<FastifyInstance> {
  const app = fastify({
    serverFactory: (handler) => {
      const serve = admitted(handler as RequestHandler, admission) as http.RequestListener;
      return addr.https && tls ? https.createServer({ ...tls }, serve) : http.createServer(serve);
    },
  });
  registerHttpEndpoints(app as unknown as FastifyInstance, deps);
  await app.listen({ host: addr.host, port: addr.port });
  return app as unknown as FastifyInstance;
}
