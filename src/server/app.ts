import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import { fastify, LogController, type FastifyInstance, type FastifyServerOptions } from "fastify";
import type * as http from "node:http";
import type { ServiceBinding } from "../services/handlers.js";
import { registerServices } from "./connect-adapter.js";
import { registerGrpcMessageEncoding } from "./grpc-message.js";
import { registerHttpEndpoints, type HttpEndpointDeps } from "./http-endpoints.js";
import { createListener, type ListenerOptions, type RequestHandler } from "./listener.js";

export interface AppOptions extends ListenerOptions {
  /** Largest request message accepted from a client. */
  readMaxBytes: number;
  /** Aborting it ends the Connect lane's calls (graceful shutdown). */
  shutdownSignal: AbortSignal;
  logger: FastifyServerOptions["logger"];
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
    logger: options.logger,
    // One log line per HTTP request would drown the logs of a busy proxy.
    logController: new LogController({ disableRequestLogging: true }),
    serverFactory: (handler) => {
      const server = createListener(handler as RequestHandler, options);
      Object.assign(server as http.Server, HTTP1_TIMEOUTS);
      return server;
    },
  });

  registerGrpcMessageEncoding(app);
  await app.register(fastifyConnectPlugin, {
    routes: (router) => registerServices(router, services),
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
  });
  registerHttpEndpoints(app, endpoints);
  return app;
}
