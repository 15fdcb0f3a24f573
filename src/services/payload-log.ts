import { create, type DescMessage, type DescMethod, type JsonValue } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import { jsonOfMessage } from "../grpc/json-transcoder.js";
import { mapAsync } from "../util/map-async.js";
import type { ServiceBinding } from "./handlers.js";

/** Where payload lines go: a message and its fields, at info level. */
export type PayloadLog = (fields: Record<string, unknown>, message: string) => void;

/** Fields whose values never reach a log: passwords and auth tokens, wherever they sit. */
const SECRET_FIELDS = new Set(["password", "hashedPassword", "token"]);

const RECEIVED = "received payload logged as grpc.request.content field";
const RETURNED = "returned response payload logged as grpc.response.content field";

/**
 * --experimental-enable-grpc-logging: every request and response message,
 * as etcd's proxy logs them (one info line each, the message as JSON in
 * `grpc.request.content` or `grpc.response.content`, with `grpc.service` and
 * `grpc.method`), on every surface. Unlike etcd's, which logs passwords and
 * tokens as they are, their values are redacted. The wrapped handlers have
 * no byte path, so every call is decoded: the cost of the flag, paid only
 * when it is on.
 */
export function withPayloadLogging(services: readonly ServiceBinding[], log: PayloadLog): ServiceBinding[] {
  return services.map(({ service, handlers }) => {
    const wrapped: Record<string, unknown> = {};
    for (const method of service.methods) {
      const handler = (handlers as Record<string, Function>)[method.localName]!;
      const fields = { "grpc.service": service.typeName, "grpc.method": method.name };
      const received = (message: unknown) =>
        log({ ...fields, "grpc.request.content": content(method.input, message) }, RECEIVED);
      const returned = (message: unknown) =>
        log({ ...fields, "grpc.response.content": content(method.output, message) }, RETURNED);
      const failed = (err: unknown) => {
        log(
          { ...fields, "grpc.response.error": ConnectError.from(err).rawMessage, "grpc.response.content": "" },
          RETURNED,
        );
        throw err;
      };
      wrapped[method.localName] = wrap(method, handler, received, returned, failed);
    }
    return { service, handlers: wrapped } as unknown as ServiceBinding;
  });
}

function wrap(
  method: DescMethod,
  handler: Function,
  received: (m: unknown) => void,
  returned: (m: unknown) => void,
  failed: (err: unknown) => never,
): unknown {
  switch (method.methodKind) {
    case "unary":
      return async (request: unknown, ctx: CallContext) => {
        received(request);
        const response = await (handler(request, ctx) as Promise<unknown>).catch(failed);
        returned(response);
        return response;
      };
    case "server_streaming":
      return (request: unknown, ctx: CallContext) => {
        received(request);
        return relay(handler(request, ctx) as AsyncIterable<unknown>, returned, failed);
      };
    default: {
      const log = (request: unknown) => {
        received(request);
        return request;
      };
      return (requests: AsyncIterable<unknown>, ctx: CallContext) =>
        relay(handler(mapAsync(requests, log), ctx) as AsyncIterable<unknown>, returned, failed);
    }
  }
}

/** Yields a handler's responses, logging each, and its failure. */
async function* relay(
  responses: AsyncIterable<unknown>,
  returned: (m: unknown) => void,
  failed: (err: unknown) => never,
): AsyncIterable<unknown> {
  try {
    for await (const response of responses) {
      returned(response);
      yield response;
    }
  } catch (err) {
    failed(err);
  }
}

/**
 * A message as JSON text (proto3 JSON, as etcd's jsonpb writes it), its
 * secrets redacted. Written by the transcoder and read back, not by toJson,
 * whose base64 would spend a quarter-second on a megabyte's value.
 */
function content(schema: DescMessage, message: unknown): string {
  const json = jsonOfMessage(schema, create(schema, message as never), { useProtoFieldName: false });
  return JSON.stringify(redact(JSON.parse(json.toString()) as JsonValue));
}

function redact(json: JsonValue): JsonValue {
  if (Array.isArray(json)) return json.map(redact);
  if (json === null || typeof json !== "object") return json;
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(json)) out[key] = SECRET_FIELDS.has(key) ? "[redacted]" : redact(value);
  return out;
}
