import type {
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
} from "@bufbuild/protobuf";
import type { Upstream } from "../upstream/upstream.js";
import { decodeRequest } from "../grpc/decode.js";
import { requestMessage } from "../grpc/request-frame.js";
import { messageOf } from "../grpc/wire.js";
import { isSafeToRepeat, safetyDependsOnRequest } from "../upstream/retry-policy.js";
import { serverStreamOverBytes, unaryOverBytes, type AsyncBytePath, type ServiceHandlers } from "./handlers.js";

/**
 * A unary method relayed to etcd as bytes: the request frame goes as it
 * came, the answer comes back as etcd sent it. Nothing is decoded unless the
 * retry policy needs to look (Txn).
 */
export function forwardUnary<M extends DescMethodUnary>(method: M, upstream: Upstream) {
  return unaryOverBytes(method, forwardBytes(method, upstream));
}

/** forwardUnary's byte path alone, for handlers that put something in front of it. */
export function forwardBytes(method: DescMethodUnary, upstream: Upstream): AsyncBytePath {
  return (requestFrame, ctx) =>
    upstream.unaryBytes(method, requestFrame, ctx, () =>
      isSafeToRepeat(
        method,
        safetyDependsOnRequest(method) ? decodeRequest(method, requestMessage(requestFrame)) : undefined,
      ),
    );
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
        handlers[method.localName] = forwardUnary(method as DescMethodUnary, upstream);
        break;
      case "server_streaming": {
        const streaming = method as DescMethodServerStreaming;
        handlers[method.localName] = serverStreamOverBytes(streaming, (requestFrame, ctx) =>
          upstream.serverStreamBytes(streaming, requestFrame, ctx, () =>
            isSafeToRepeat(
              streaming,
              safetyDependsOnRequest(streaming) ? decodeRequest(streaming, messageOf(requestFrame)) : undefined,
            ),
          ),
        );
        break;
      }
      case "bidi_streaming":
        handlers[method.localName] = (requests: never, ctx: never) =>
          upstream.bidiStream(method as DescMethodBiDiStreaming, requests, ctx);
        break;
      case "client_streaming":
        throw new Error(`${service.typeName}/${method.name}: client streaming is not part of etcd's API`);
    }
  }
  return handlers as ServiceHandlers<S>;
}
