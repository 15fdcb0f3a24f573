import { create, fromJson, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { startCall, type CallContext } from "../../call-context.js";
import { GRPC_OK, decodeGrpcTimeout, frame } from "../../grpc/wire.js";
import { jsonOfBinary, jsonOfMessage } from "../../grpc/json-transcoder.js";
import { exact64BitFields, parseExactJson } from "../../grpc/json-numbers.js";
import { GATEWAY_ROUTES } from "../../gen/gateway-routes.js";
import type { RpcObserver, RpcRecord } from "../../metrics.js";
import type { Rpc } from "../../services/rpc-table.js";
import { wholeAnswer } from "../../upstream/answer.js";
import type { EtcdLine, EtcdVersion } from "../../upstream/etcd-http.js";

/** etcd's gateway paths for its v3election and v3lock services, which our protos do not annotate. */
const RECIPE_ROUTES: ReadonlyArray<readonly [string, string, string]> = [
  ["/v3/election/campaign", "v3electionpb.Election", "Campaign"],
  ["/v3/election/proclaim", "v3electionpb.Election", "Proclaim"],
  ["/v3/election/leader", "v3electionpb.Election", "Leader"],
  ["/v3/election/observe", "v3electionpb.Election", "Observe"],
  ["/v3/election/resign", "v3electionpb.Election", "Resign"],
  ["/v3/lock/lock", "v3lockpb.Lock", "Lock"],
  ["/v3/lock/unlock", "v3lockpb.Lock", "Unlock"],
  // etcd binds these besides /v3/lease/...
  ["/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"],
  ["/v3/kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"],
  ["/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"],
];

/** etcd 3.4 and 3.5 serve every /v3 path under /v3beta too (and none under /v3alpha). */
const PREFIXES = ["/v3/", "/v3beta/"];

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
/** etcd's gateway ignores fields it does not know. */
const PARSE_OPTIONS = { ignoreUnknownFields: true } as const;

/**
 * etcd's JSON gateway (`POST /v3/kv/range` and the rest, also under
 * /v3beta), and `GET /version`, so scripts and JSON-gateway client
 * libraries written for etcd work against the proxy unchanged. Requests
 * reach the same handlers as every other protocol. Bodies are read whatever
 * their content type (curl -d sends a form type) and unknown fields are
 * ignored, as etcd does; the `Authorization` header carries the token.
 * Streams answer one `{"result": ...}` line per message. Errors, unknown
 * paths and wrong methods are answered as the etcd in use answers them:
 * etcd 3.4's and 3.5's gateways word them differently.
 */
export interface GatewayOptions {
  rpcs: ReadonlyMap<string, Rpc>;
  /** The etcd in use, whose answers and words the gateway matches. */
  etcd: EtcdVersion;
  /** Aborted when the proxy shuts down: open streams end at once, as etcd's do. */
  shutdown: AbortSignal;
  /** Hears about every call, as the gRPC lanes report theirs (metrics, debug logs). */
  observe?: RpcObserver;
}

export async function registerGateway(
  app: FastifyInstance,
  { rpcs, etcd, shutdown, observe }: GatewayOptions,
): Promise<void> {
  // Later routes win on a shared path, as in grpc-gateway (Hash and HashKV share one).
  const routes = new Map<string, Rpc>();
  for (const [path, service, method] of [...GATEWAY_ROUTES, ...RECIPE_ROUTES]) {
    const target = rpcs.get(`/${service}/${method}`);
    if (!target) continue;
    for (const prefix of PREFIXES) routes.set(prefix + path.slice("/v3/".length), target);
  }

  app.get("/version", async (_req, reply) => {
    try {
      return reply.type("application/json").send(await etcd.document());
    } catch {
      return reply.code(503).type("text/plain").send("etcd did not answer /version\n");
    }
  });

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));
    for (const [path, target] of routes) {
      scope.post(path, async (request, reply) =>
        serve(target, request, reply, {
          line: await etcd.releaseLine(),
          record: observe?.(target.method),
          shutdown,
        }),
      );
    }
    // Anything else under the gateway's prefixes gets etcd's gateway's own answers.
    for (const prefix of PREFIXES) {
      scope.all(`${prefix}*`, async (request, reply) => {
        const known = routes.has(request.url.split("?", 1)[0]!);
        return unrouted(reply, known, await etcd.releaseLine());
      });
    }
  });
}

/** A wrong method on a gateway path, or a path it does not serve, as each etcd line answers it. */
function unrouted(reply: FastifyReply, knownPath: boolean, line: EtcdLine): FastifyReply {
  if (line === "3.4") {
    return knownPath
      ? reply.code(405).type("text/plain; charset=utf-8").send("Method Not Allowed\n")
      : reply.code(404).type("text/plain; charset=utf-8").send("Not Found\n");
  }
  return knownPath
    ? reply.code(501).type("application/json").send({ code: Code.Unimplemented, message: "Method Not Allowed" })
    : reply.code(404).type("application/json").send({ code: Code.NotFound, message: "Not Found" });
}

interface GatewayCall {
  line: EtcdLine;
  record: RpcRecord | undefined;
  shutdown: AbortSignal;
}

async function serve(
  rpc: Rpc,
  request: FastifyRequest,
  reply: FastifyReply,
  { line, record, shutdown }: GatewayCall,
): Promise<unknown> {
  const method: DescMethod = rpc.method;
  const abort = new AbortController();
  // The response closing before it was finished means the client left.
  reply.raw.once("close", () => {
    if (!reply.raw.writableEnded) abort.abort(new ConnectError("context canceled", Code.Canceled));
  });
  // Ends with the call's status; a client gone before the end is Canceled.
  reply.raw.once("close", () => record?.end(Code.Canceled));
  if (request.headers.origin !== undefined && !isJson(request.headers["content-type"])) {
    const error = new ConnectError(BROWSER_BODY_REFUSED, Code.InvalidArgument);
    record?.end(error.code);
    return reply.code(415).type("application/json").send({ code: error.code, message: error.rawMessage });
  }
  const call = gatewayContext(request, abort);
  if (call instanceof ConnectError) return sendError(reply, call, line, record);
  const { ctx } = call;
  reply.raw.once("close", call.stop);
  let inputs: unknown[];
  try {
    inputs = parseExactJson(String(request.body ?? "")).map((document) =>
      fromJson(method.input, exact64BitFields(method.input, document, line), PARSE_OPTIONS),
    );
  } catch (err) {
    // A 64-bit value etcd would refuse is refused in its words; anything else keeps ours.
    const message = err instanceof RangeError ? err.message : `invalid request body: ${(err as Error).message}`;
    return sendError(reply, new ConnectError(message, Code.InvalidArgument), line, record);
  }
  const messages = method.methodKind === "unary" ? 1 : inputs.length;
  for (let i = 0; i < messages; i++) record?.received();
  if (rpc.kind === "unary") {
    try {
      const json = await unaryJson(rpc, inputs[0] ?? create(method.input), ctx);
      record?.sent();
      record?.end(GRPC_OK);
      return reply.type("application/json; charset=utf-8").send(json);
    } catch (err) {
      return sendError(reply, ConnectError.from(err), line, record);
    }
  }
  const input = method.methodKind === "server_streaming" ? (inputs[0] ?? create(method.input)) : fromArray(inputs);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { "content-type": "application/json" });
  // A shutdown ends the stream at once with etcd's error line, as etcd ends its own on SIGTERM.
  const shuttingDown = () => abort.abort(shutdownError(line));
  if (shutdown.aborted) shuttingDown();
  else shutdown.addEventListener("abort", shuttingDown, { once: true });
  try {
    for await (const json of streamJson(rpc, input, ctx)) {
      if (abort.signal.aborted) break;
      raw.write(Buffer.concat([RESULT_OPEN, json, RESULT_CLOSE]));
      record?.sent();
    }
    // A stream whose deadline passed, or that a shutdown ended, ends with etcd's error line, not quietly.
    const reason: unknown = abort.signal.reason;
    if (reason instanceof ConnectError && ENDS_WITH_ERROR_LINE.has(reason.code)) throw reason;
    record?.end(GRPC_OK);
  } catch (err) {
    const error = ConnectError.from(err);
    record?.end(error.code);
    raw.write(`${JSON.stringify({ error: streamError(error, line) })}\n`);
  } finally {
    shutdown.removeEventListener("abort", shuttingDown);
  }
  raw.end();
  abort.abort();
  return reply;
}

const ENDS_WITH_ERROR_LINE = new Set([Code.DeadlineExceeded, Code.Unavailable]);

type UnaryRpc = Extract<Rpc, { kind: "unary" }>;

/**
 * A unary call's answer as JSON text. Where the RPC works on bytes, etcd's
 * answer is written straight from them (grpc/json-transcoder.ts): a
 * 2,000-key Range is not made into 2,000 messages and a JSON tree first.
 */
async function unaryJson(rpc: UnaryRpc, input: unknown, ctx: CallContext): Promise<Buffer> {
  const schema = rpc.method.output;
  if (!rpc.bytes) return messageJson(schema, await rpc.handler(input, ctx));
  const answer = await wholeAnswer(await rpc.bytes(frame(toBinary(rpc.method.input, input as never)), ctx));
  return jsonOfBinary(schema, answer, JSON_OPTIONS);
}

/**
 * A stream's answers as JSON texts: from etcd's bytes where the RPC passes
 * them on as they are (snapshots), else through each message's encoding (a
 * watch's events), never through toJson's base64.
 */
async function* streamJson(rpc: Rpc, input: unknown, ctx: CallContext): AsyncIterable<Buffer> {
  const schema = rpc.method.output;
  if (rpc.kind === "stream" && rpc.bytes?.kind === "server-stream") {
    for await (const answer of rpc.bytes.path(frame(toBinary(rpc.method.input, input as never)), ctx))
      yield jsonOfBinary(schema, answer, JSON_OPTIONS);
  } else {
    for await (const output of (rpc.handler as Handler)(input, ctx) as AsyncIterable<unknown>)
      yield messageJson(schema, output);
  }
}

function messageJson(schema: DescMessage, message: unknown): Buffer {
  return jsonOfMessage(schema, create(schema, message as never), JSON_OPTIONS);
}

const RESULT_OPEN = Buffer.from(`{"result":`);
const RESULT_CLOSE = Buffer.from("}\n");

/**
 * What a gateway stream ends with when the server goes away: etcd 3.4's
 * gateway sees its gRPC connection close, 3.5's sees the server's EOF.
 */
function shutdownError(line: EtcdLine): ConnectError {
  return new ConnectError(line === "3.4" ? "transport is closing" : "error reading from server: EOF", Code.Unavailable);
}

/**
 * The call's metadata and deadline, as etcd's gateway (grpc-gateway) reads
 * them: `Grpc-Metadata-<key>` headers carry metadata (the token,
 * `hasleader`, `client-api-version`), `Authorization` carries the token
 * too, and `Grpc-Timeout` sets the deadline. A bad timeout is refused.
 */
function gatewayContext(
  request: FastifyRequest,
  abort: AbortController,
): { ctx: CallContext; stop: () => void } | ConnectError {
  const headers = request.headers;
  const header = (key: string) => {
    const value = headers[key];
    return typeof value === "string" ? value : undefined;
  };
  const metadata = (key: string) =>
    header(`grpc-metadata-${key}`) ?? (key === "token" ? (header("authorization") ?? header("token")) : undefined);
  const timeout = header("grpc-timeout");
  const timeoutMs = timeout === undefined ? undefined : decodeGrpcTimeout(timeout);
  if (typeof timeoutMs === "string") return new ConnectError(`invalid grpc-timeout: ${timeout}`, Code.InvalidArgument);
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => abort.abort(new ConnectError("context deadline exceeded", Code.DeadlineExceeded)), timeoutMs);
  return { ctx: startCall(metadata, timeoutMs, abort.signal), stop: () => clearTimeout(timer) };
}

/**
 * A page can send text/plain, form and multipart bodies to any site without
 * asking (no CORS preflight), so a browser's call (one with an Origin) must
 * say it is JSON, which only a page the proxy allowed can.
 */
const BROWSER_BODY_REFUSED = "a browser's request to the gateway must have Content-Type: application/json";

function isJson(contentType: string | undefined): boolean {
  return contentType?.split(";", 1)[0]!.trim().toLowerCase() === "application/json";
}

async function* fromArray<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

function sendError(reply: FastifyReply, err: ConnectError, line: EtcdLine, record?: RpcRecord): FastifyReply {
  record?.end(err.code);
  const status = HTTP_STATUS[err.code] ?? 500;
  const body =
    line === "3.4"
      ? { error: err.rawMessage, message: err.rawMessage, code: err.code }
      : { code: err.code, message: err.rawMessage };
  return reply.status(status).type("application/json").send(body);
}

/** The error line that ends a stream, as each etcd line words it. */
function streamError(err: ConnectError, line: EtcdLine): object {
  if (line === "3.5") return { code: err.code, message: err.rawMessage };
  const status = HTTP_STATUS[err.code] ?? 500;
  return { grpc_code: err.code, http_code: status, message: err.rawMessage, http_status: statusText(status) };
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
