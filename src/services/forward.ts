import type {
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
} from "@bufbuild/protobuf";
import type { Upstream } from "../upstream/upstream.js";
import type { ServiceHandlers } from "./handlers.js";

/** Handlers made by forwardAll: the native lane may relay their calls as bytes. */
const forwarders = new WeakSet<object>();

/** True when `handler` only relays its method to etcd, untouched. */
export function isForwarder(handler: unknown): boolean {
  return typeof handler === "function" && forwarders.has(handler);
}

/**
 * Handlers that relay every method of `service` to etcd unchanged. Services
 * with logic of their own start from these and replace what they need.
 */
export function forwardAll<S extends DescService>(service: S, upstream: Upstream): ServiceHandlers<S> {
  const handlers: Record<string, unknown> = {};
  for (const method of service.methods) {
    switch (method.methodKind) {
      case "unary":
        handlers[method.localName] = (request: never, ctx: never) =>
          upstream.unary(method as DescMethodUnary, request, ctx);
        break;
      case "server_streaming":
        handlers[method.localName] = (request: never, ctx: never) =>
          upstream.serverStream(method as DescMethodServerStreaming, request, ctx);
        break;
      case "bidi_streaming":
        handlers[method.localName] = (requests: never, ctx: never) =>
          upstream.bidiStream(method as DescMethodBiDiStreaming, requests, ctx);
        break;
      case "client_streaming":
        throw new Error(`${service.typeName}/${method.name}: client streaming is not part of etcd's API`);
    }
  }
  for (const handler of Object.values(handlers)) forwarders.add(handler as object);
  return handlers as ServiceHandlers<S>;
}
