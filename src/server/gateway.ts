import { create, fromJson, toJson, type DescMethod, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { CallContext } from "../call-context.js";
import { GATEWAY_ROUTES } from "../gen/gateway-routes.js";
import type { ServiceBinding } from "../services/handlers.js";

/** etcd's gateway paths for its v3election and v3lock services, which our protos do not annotate. */
const RECIPE_ROUTES: ReadonlyArray<readonly [string, string, string]> = [
  ["/v3/election/campaign", "v3electionpb.Election", "Campaign"],
  ["/v3/election/proclaim", "v3electionpb.Election", "Proclaim"],
  ["/v3/election/leader", "v3electionpb.Election", "Leader"],
  ["/v3/election/observe", "v3electionpb.Election", "Observe"],
  ["/v3/election/resign", "v3electionpb.Election", "Resign"],
  ["/v3/lock/lock", "v3lockpb.Lock", "Lock"],
  ["/v3/lock/unlock", "v3lockpb.Lock", "Unlock"],
];

/** grpc-gateway's HTTP status for each gRPC code, which etcd's gateway answers with. */
const HTTP_STATUS: Record<number, number> = {
  [Code.Canceled]: 408,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.Unauthenticated]: 401,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 412,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
};

type Handler = (input: unknown, ctx: CallContext) => unknown;

/** etcd's JSON gateway output: proto field names, defaults left out, int64 as strings, bytes as base64. */
const JSON_OPTIONS = { useProtoFieldName: true } as const;

/**
 * etcd's JSON gateway (`POST /v3/kv/range` and the rest), so scripts written
 * for it work against the proxy unchanged. Requests reach the same handlers
 * as every other protocol. Bodies are read whatever their content type
 * (curl -d sends a form type); the `Authorization` header carries the token.
 * Streams answer one `{"result": ...}` line per message.
 */
export async function registerGateway(app: FastifyInstance, services: ServiceBinding[]): Promise<void> {
  const handlers = new Map<string, { method: DescMethod; handler: Handler }>();
  for (const { service, handlers: impl } of services) {
    for (const method of service.methods) {
      handlers.set(`${service.typeName}/${method.name}`, {
        method,
        handler: (impl as Record<string, Handler>)[method.localName]!,
      });
    }
  }
  // Later routes win on a shared path, as in grpc-gateway (Hash and HashKV share one).
  const routes = new Map<string, { method: DescMethod; handler: Handler }>();
  for (const [path, service, method] of [...GATEWAY_ROUTES, ...RECIPE_ROUTES]) {
    const target = handlers.get(`${service}/${method}`);
    if (target) routes.set(path, target);
  }

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));
    for (const [path, target] of routes) {
      scope.post(path, (request, reply) => serve(target.method, target.handler, request, reply));
    }
  });
}

async function serve(
  method: DescMethod,
  handler: Handler,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const abort = new AbortController();
  // The response closing before it was finished means the client left.
  reply.raw.once("close", () => {
    if (!reply.raw.writableEnded) abort.abort(new ConnectError("context canceled", Code.Canceled));
  });
  const ctx = gatewayContext(request, abort.signal);
  let inputs: unknown[];
  try {
    inputs = parseBody(String(request.body ?? "")).map((json) => fromJson(method.input, json));
  } catch (err) {
    return sendError(reply, new ConnectError(`invalid request body: ${(err as Error).message}`, Code.InvalidArgument));
  }
  if (method.methodKind === "unary") {
    try {
      const output = await handler(inputs[0] ?? create(method.input), ctx);
      return reply
        .type("application/json")
        .send(toJson(method.output, create(method.output, output as never), JSON_OPTIONS));
    } catch (err) {
      return sendError(reply, ConnectError.from(err));
    }
  }
  const input = method.methodKind === "server_streaming" ? (inputs[0] ?? create(method.input)) : fromArray(inputs);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { "content-type": "application/json" });
  try {
    for await (const output of handler(input, ctx) as AsyncIterable<unknown>) {
      if (abort.signal.aborted) break;
      raw.write(
        `${JSON.stringify({ result: toJson(method.output, create(method.output, output as never), JSON_OPTIONS) })}\n`,
      );
    }
  } catch (err) {
    const e = ConnectError.from(err);
    const status = HTTP_STATUS[e.code] ?? 500;
    raw.write(
      `${JSON.stringify({ error: { grpc_code: e.code, http_code: status, message: e.rawMessage, http_status: statusText(status) } })}\n`,
    );
  }
  raw.end();
  abort.abort();
  return reply;
}

function gatewayContext(request: FastifyRequest, signal: AbortSignal): CallContext {
  const headers = request.headers;
  const forwardHeaders: Record<string, string> = {};
  const token = headers["authorization"] ?? headers["token"];
  if (typeof token === "string") forwardHeaders["token"] = token;
  return { forwardHeaders, deadline: undefined, signal };
}

/** A body holds one JSON message, or several in a row (streams). */
function parseBody(body: string): JsonValue[] {
  const text = body.trim();
  if (text === "") return [];
  try {
    return [JSON.parse(text) as JsonValue];
  } catch {
    return text
      .split(/\n+/)
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as JsonValue);
  }
}

async function* fromArray<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

function sendError(reply: FastifyReply, err: ConnectError): FastifyReply {
  const status = HTTP_STATUS[err.code] ?? 500;
  return reply
    .status(status)
    .type("application/json")
    .send({ error: err.rawMessage, code: err.code, message: err.rawMessage });
}

function statusText(status: number): string {
  return (
    {
      400: "Bad Request",
      401: "Unauthorized",
      403: "Forbidden",
      404: "Not Found",
      408: "Request Timeout",
      409: "Conflict",
      412: "Precondition Failed",
      429: "Too Many Requests",
      501: "Not Implemented",
      503: "Service Unavailable",
      504: "Gateway Timeout",
    }[status] ?? "Internal Server Error"
  );
}
