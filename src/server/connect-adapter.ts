import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { FORWARDED_METADATA, type CallContext } from "../call-context.js";
import type { ServiceBinding } from "../services/handlers.js";

/** Translates Connect's per-call context into the proxy's transport-free one. */
export function callContextOf(ctx: HandlerContext): CallContext {
  const forwardHeaders: Record<string, string> = {};
  for (const key of FORWARDED_METADATA) {
    const value = ctx.requestHeader.get(key);
    if (value !== null) forwardHeaders[key] = value;
  }
  const timeoutMs = ctx.timeoutMs();
  return {
    forwardHeaders,
    deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
    signal: ctx.signal,
  };
}

/** Adapts the proxy's handlers to a Connect ServiceImpl for the router. */
export function toServiceImpl<S extends DescService>(binding: ServiceBinding<S>): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const method of binding.service.methods) {
    const handler = (binding.handlers as Record<string, (input: unknown, ctx: CallContext) => unknown>)[
      method.localName
    ]!;
    impl[method.localName] = (input: unknown, ctx: HandlerContext) => handler(input, callContextOf(ctx));
  }
  return impl as ServiceImpl<S>;
}

export function registerServices(router: ConnectRouter, bindings: ServiceBinding[]): void {
  for (const binding of bindings) router.service(binding.service, toServiceImpl(binding));
}
