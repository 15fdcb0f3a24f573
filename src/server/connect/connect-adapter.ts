import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { startCall, type CallContext } from "../../call-context.js";
import type { RpcObserver, RpcRecord } from "../../metrics.js";
import type { ServiceBinding } from "../../services/handlers.js";

/** Translates Connect's per-call context into the proxy's transport-free one. */
function callContextOf(ctx: HandlerContext): CallContext {
  return startCall((key) => ctx.requestHeader.get(key), ctx.timeoutMs(), ctx.signal);
}

/** Adapts the proxy's handlers to a Connect ServiceImpl for the router, reporting each call to `observe`. */
function toServiceImpl<S extends DescService>(binding: ServiceBinding<S>, observe?: RpcObserver): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const method of binding.service.methods) {
    const handler = (binding.handlers as Record<string, (input: unknown, ctx: CallContext) => unknown>)[
      method.localName
    ]!;
    if (method.methodKind !== "unary") {
      impl[method.localName] = (input: unknown, ctx: HandlerContext) => {
        const run = (i: unknown) =>
          endingAsAborted(handler(i, callContextOf(ctx)) as AsyncIterable<unknown>, ctx.signal);
        return observe
          ? recordedStream(observe(method), method.methodKind === "server_streaming", input, run)
          : run(input);
      };
    } else if (!observe) {
      impl[method.localName] = (input: unknown, ctx: HandlerContext) => handler(input, callContextOf(ctx));
    } else {
      impl[method.localName] = async (input: unknown, ctx: HandlerContext) => {
        const record = observe(method);
        record.received();
        try {
          const output = await handler(input, callContextOf(ctx));
          record.sent();
          record.end(0);
          return output;
        } catch (err) {
          record.end(ConnectError.from(err).code);
          throw err;
        }
      };
    }
  }
  return impl as ServiceImpl<S>;
}

/**
 * A stream the proxy ended because its call was aborted (the proxy shutting
 * down, with Connect's shutdown signal) ends with the abort's reason, as the
 * native lane ends it (UNAVAILABLE "etcd-connect-proxy is shutting down"),
 * never with OK.
 */
async function* endingAsAborted(stream: AsyncIterable<unknown>, signal: AbortSignal): AsyncIterable<unknown> {
  yield* stream;
  if (signal.aborted) throw ConnectError.from(signal.reason);
}

/** A streaming call whose messages in and out, and final status, are recorded. */
async function* recordedStream(
  record: RpcRecord,
  singleRequest: boolean,
  input: unknown,
  run: (input: unknown) => AsyncIterable<unknown>,
): AsyncIterable<unknown> {
  let code = Code.Canceled as number; // unless it ends on its own
  try {
    if (singleRequest) record.received();
    const counted = singleRequest ? input : countReceived(input as AsyncIterable<unknown>, record);
    for await (const output of run(counted)) {
      record.sent();
      yield output;
    }
    code = 0;
  } catch (err) {
    code = ConnectError.from(err).code;
    throw err;
  } finally {
    record.end(code);
  }
}

async function* countReceived(requests: AsyncIterable<unknown>, record: RpcRecord): AsyncIterable<unknown> {
  for await (const request of requests) {
    record.received();
    yield request;
  }
}

export function registerServices(router: ConnectRouter, bindings: ServiceBinding[], observe?: RpcObserver): void {
  for (const binding of bindings) router.service(binding.service, toServiceImpl(binding, observe));
}
