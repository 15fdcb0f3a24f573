import type { DescMethodBiDiStreaming, DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import { servedOverGet } from "../grpc/method-effects.js";
import {
  bytePathOf,
  type BidiBytePath,
  type BytePath,
  type ServerStreamBytePath,
  type ServiceBinding,
} from "./handlers.js";

/** One RPC the proxy serves: its method, its handler, and what every surface needs to route to it. */
export type Rpc =
  | {
      kind: "unary";
      /** Its gRPC path, e.g. /etcdserverpb.KV/Range. */
      path: string;
      method: DescMethodUnary;
      handler: (request: unknown, ctx: CallContext) => Promise<unknown>;
      /** The handler's own byte-level implementation (forwards, the cache), when it has one. */
      bytes: BytePath | undefined;
      /** A cheap read (grpc/method-effects.ts): Connect serves it over GET too. */
      servedOverGet: boolean;
    }
  | {
      kind: "stream";
      path: string;
      method: DescMethodServerStreaming | DescMethodBiDiStreaming;
      handler: (input: unknown, ctx: CallContext) => AsyncIterable<unknown>;
      /** The handler's own byte-level implementation, when it has one: per method kind, a bidi one (lease keep-alives) or a server stream's (forwards). */
      bytes: { kind: "bidi"; path: BidiBytePath } | { kind: "server-stream"; path: ServerStreamBytePath } | undefined;
      servedOverGet: boolean;
    };

/**
 * Every RPC the proxy serves, by gRPC path, built once from the service
 * bindings: the native lane, the JSON gateway and the Connect lane's method
 * rules all route from it. etcd has no client-streaming RPCs.
 */
export function rpcTable(services: readonly ServiceBinding[]): ReadonlyMap<string, Rpc> {
  const table = new Map<string, Rpc>();
  for (const { service, handlers } of services) {
    for (const method of service.methods) {
      const handler = (handlers as Record<string, unknown>)[method.localName] as never;
      const path = `/${service.typeName}/${method.name}`;
      const overGet = servedOverGet(method);
      if (method.methodKind === "unary") {
        const unary = method as DescMethodUnary;
        table.set(path, {
          kind: "unary",
          path,
          method: unary,
          handler,
          bytes: bytePathOf(handler) as BytePath | undefined,
          servedOverGet: overGet,
        });
      } else if (method.methodKind !== "client_streaming") {
        const streaming = method as DescMethodServerStreaming | DescMethodBiDiStreaming;
        const bytes = bytePathOf(handler);
        table.set(path, {
          kind: "stream",
          path,
          method: streaming,
          handler,
          bytes:
            bytes === undefined
              ? undefined
              : streaming.methodKind === "bidi_streaming"
                ? { kind: "bidi", path: bytes as BidiBytePath }
                : { kind: "server-stream", path: bytes as ServerStreamBytePath },
          servedOverGet: overGet,
        });
      }
    }
  }
  return table;
}
