import {
  fromBinary,
  type DescMethodBiDiStreaming,
  type DescMethodServerStreaming,
  type DescMethodUnary,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import { Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { int64Field } from "../grpc/scan.js";
import type { RequestFrame } from "../grpc/request-frame.js";
import { PREFIX_BYTES, encodeGrpcTimeout, frame } from "../grpc/wire.js";
import { EndpointPool, type Endpoint } from "./endpoint-pool.js";
import { H2Client, type UpstreamTls } from "./h2-client.js";
import { MemberQuotas } from "./member-quota.js";
import { isConnectionFailure, neverReachedEtcd, toClientError } from "./errors.js";
import { isSafeToRepeat } from "./retry-policy.js";
import { sleep } from "../util/abortable-sleep.js";
import { UpstreamBase, type EndpointStatus } from "./upstream.js";
import { wholeAnswer, type Answer } from "./answer.js";

export interface UpstreamOptions {
  endpoints: string[];
  /** Per-message limits toward etcd (--max-send-bytes, --max-recv-bytes). */
  maxSendBytes: number;
  maxRecvBytes: number;
  /** HTTP/2 keepalive pings toward etcd (--dial-keepalive-*); 0 disables. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  keepaliveWithoutStream: boolean;
  /** TLS toward https endpoints (--cert, --key, --cacert, --insecure-skip-tls-verify). */
  tls?: UpstreamTls;
  /**
   * How long a call without its own deadline keeps retrying while no
   * endpoint answers; clientv3's dial timeout is the model (5 s).
   */
  retryWindowMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  onEndpointDown?: (url: string, err: ConnectError) => void;
  onEndpointUp?: (url: string) => void;
}

/** Each endpoint's lean HTTP/2 gRPC client (the proxy's own HTTP/2), for unary and streaming calls alike. */
interface EndpointClients {
  h2: H2Client;
}

/** The result of opening a call on some endpoint. */
interface Attempt<T> {
  endpoint: Endpoint<EndpointClients>;
  value: T;
}

/** StatusResponse.dbSizeQuota, etcd 3.6 and later. */
const STATUS_DB_SIZE_QUOTA = 12;

/** How long streams may stay on an endpoint that left the cluster before they move (see H2Client.retire). */
const RETIRE_GRACE_MS = 30_000;

/**
 * The Upstream that talks to etcd: one HTTP/2 client per endpoint, calls
 * sent to the endpoint in use and moved to another when it fails (as far as
 * repeating the call is safe), and endpoints followed as the cluster changes.
 */
export class EtcdUpstream extends UpstreamBase {
  private readonly pool: EndpointPool<EndpointClients>;
  private readonly quotas: MemberQuotas;

  constructor(private readonly options: UpstreamOptions) {
    super();
    this.quotas = new MemberQuotas(options.tls);
    this.pool = new EndpointPool(
      options.endpoints.map((url) => ({ url, client: this.connect(url) })),
      { backoffMinMs: options.backoffMinMs, backoffMaxMs: options.backoffMaxMs },
    );
  }

  /**
   * Makes `urls` the endpoints (--endpoints-auto-sync-interval): new ones
   * are connected, kept ones keep their connection and health, and those
   * that left are retired without failing the calls in flight on them.
   * Returns what changed.
   */
  syncEndpoints(urls: readonly string[]): { added: string[]; removed: string[] } {
    const before = new Set(this.pool.endpoints.map((e) => e.url));
    const removed = this.pool.sync(urls, (url) => this.connect(url));
    for (const e of removed) e.client.h2.retire(RETIRE_GRACE_MS);
    return {
      added: this.pool.endpoints.map((e) => e.url).filter((url) => !before.has(url)),
      removed: removed.map((e) => e.url),
    };
  }

  private connect(url: string): EndpointClients {
    const { keepaliveTimeMs, keepaliveTimeoutMs, keepaliveWithoutStream, tls } = this.options;
    return { h2: new H2Client(url, { keepaliveTimeMs, keepaliveTimeoutMs, keepaliveWithoutStream, tls }) };
  }

  endpoints(): Array<{ url: string; up: boolean; current: boolean }> {
    return this.pool.endpoints.map((e) => ({ url: e.url, up: this.pool.isUp(e), current: e === this.pool.current }));
  }

  async unaryBytes(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): Promise<Answer> {
    checkSendLimit(requestFrame, this.options.maxSendBytes);
    const { value } = await this.attempt(ctx, new LazyRepeatPolicy(safeToRepeat), (clients) =>
      this.send(clients.h2, method, requestFrame, ctx),
    );
    return value;
  }

  /**
   * A unary call on any endpoint but those in `avoid` (URLs), while another
   * is up; says which endpoint answered. For decorators that must move past
   * an endpoint whose answer they cannot use (ordering's lagging members).
   */
  async unaryAvoiding(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    avoid: ReadonlySet<string>,
  ): Promise<{ endpoint: string; answer: Answer }> {
    checkSendLimit(requestFrame, this.options.maxSendBytes);
    const avoided = new Set(this.pool.endpoints.filter((e) => avoid.has(e.url)));
    const { endpoint, value } = await this.attempt(
      ctx,
      repeatPolicy(isSafeToRepeat(method, undefined)),
      (clients) => this.send(clients.h2, method, requestFrame, ctx),
      avoided,
    );
    return { endpoint: endpoint.url, answer: value };
  }

  close(): void {
    for (const e of this.pool.endpoints) e.client.h2.close();
  }

  /** One unary call on one endpoint's lean client, with the call's metadata and deadline. */
  private send(h2: H2Client, method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer> {
    return h2.unary(
      pathOf(method),
      requestFrame,
      callMetadata(ctx),
      ctx.signal,
      this.options.maxRecvBytes,
      ctx.answers,
    );
  }

  async unaryOnLeaderBytes(method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer> {
    const leader = await this.findLeader(ctx);
    if (!leader) return this.unaryBytes(method, requestFrame, ctx, () => isSafeToRepeat(method, undefined));
    return this.sendOnlyTo(leader, method, requestFrame, ctx);
  }

  async unaryOnEndpointBytes(
    url: string,
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
  ): Promise<Answer> {
    const endpoint = this.pool.endpoints.find((e) => e.url === url);
    if (!endpoint) throw new ConnectError(`no endpoint ${url} among --endpoints`, Code.NotFound);
    return this.sendOnlyTo(endpoint, method, requestFrame, ctx);
  }

  /** One unary call on one chosen endpoint, never moved elsewhere; its failure is the client's. */
  private async sendOnlyTo(
    endpoint: Endpoint<EndpointClients>,
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
  ): Promise<Answer> {
    checkSendLimit(requestFrame, this.options.maxSendBytes);
    try {
      return await this.send(endpoint.client.h2, method, requestFrame, ctx);
    } catch (err) {
      throw toClientError(err);
    }
  }

  async statusOfEach(ctx: CallContext): Promise<EndpointStatus[]> {
    return Promise.all(
      (await this.askEach(ctx)).map(async ({ endpoint, status, error, quota }) => ({
        url: endpoint.url,
        status,
        error,
        quotaBytes: quota || (status ? await this.quotas.of(endpoint.url) : undefined),
      })),
    );
  }

  /** Status from every endpoint at once, each with its own outcome. */
  private askEach(ctx: CallContext) {
    const statusFrame = frame(new Uint8Array(0));
    return Promise.all(
      this.pool.endpoints.map(async (endpoint) => {
        try {
          const bytes = await wholeAnswer(
            await this.send(endpoint.client.h2, Maintenance.method.status, statusFrame, ctx),
          );
          // etcd 3.6 tells its quota in Status (dbSizeQuota, field 12), which the 3.5 schema lacks.
          const quota = Number(int64Field(bytes, STATUS_DB_SIZE_QUOTA));
          return { endpoint, status: fromBinary(Maintenance.method.status.output, bytes), quota };
        } catch (err) {
          return { endpoint, error: toClientError(err) };
        }
      }),
    );
  }

  /** The endpoint whose member says it is the leader. */
  private async findLeader(ctx: CallContext): Promise<Endpoint<EndpointClients> | undefined> {
    for (const { endpoint, status } of await this.askEach(ctx)) {
      if (status?.header !== undefined && status.leader !== 0n && status.header.memberId === status.leader)
        return endpoint;
    }
    return undefined;
  }

  async *serverStreamBytes(
    method: DescMethodServerStreaming,
    requestFrame: Buffer,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): AsyncIterable<Buffer> {
    checkSendLimit(requestFrame, this.options.maxSendBytes);
    const opened = await this.attempt(ctx, new LazyRepeatPolicy(safeToRepeat), ({ h2 }) =>
      this.openStream(h2, method, single(requestFrame), ctx),
    );
    yield* this.relay(opened, ctx);
  }

  async *bidiStreamBytes(
    method: DescMethodBiDiStreaming,
    requestFrames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): AsyncIterable<Buffer> {
    // A request stream can be re-sent elsewhere only while no message of it
    // has been taken: etcd cannot have seen any of it then.
    const limit = this.options.maxSendBytes;
    const source = new UntouchedSource(requestFrames, (requestFrame) => checkSendLimit(requestFrame, limit));
    const policy = { safe: false, mayResend: (err: unknown) => source.untouched && neverReachedEtcd(err) };
    const opened = await this.attempt(ctx, policy, ({ h2 }) => this.openStream(h2, method, source, ctx));
    yield* this.relay(opened, ctx);
  }

  /** Opens a streaming call on one endpoint's lean client, with the call's metadata and deadline. */
  private openStream(
    h2: H2Client,
    method: DescMethodServerStreaming | DescMethodBiDiStreaming,
    frames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): Promise<AsyncIterable<Buffer>> {
    return h2.stream(pathOf(method), frames, callMetadata(ctx), ctx.signal, this.options.maxRecvBytes);
  }

  /** A call's response messages; a failure on the way tells the pool about the endpoint. */
  private async *relay(opened: Attempt<AsyncIterable<Buffer>>, ctx: CallContext): AsyncIterable<Buffer> {
    try {
      yield* opened.value;
    } catch (err) {
      if (!ctx.signal.aborted && isConnectionFailure(err)) this.endpointFailed(opened.endpoint, err);
      throw toClientError(err);
    }
  }

  /**
   * Runs `call` on the best endpoint, moving to the next one on connection
   * failures while the policy allows a resend and time remains. Errors etcd
   * itself returns are final, except Unavailable ("leader changed", "no
   * leader") for calls that are safe to repeat.
   */
  private async attempt<T>(
    ctx: CallContext,
    policy: RepeatPolicy,
    call: (clients: EndpointClients) => Promise<T>,
    /** Endpoints not to ask while others remain (ordering's lagging members). */
    avoid?: ReadonlySet<Endpoint<EndpointClients>>,
  ): Promise<Attempt<T>> {
    // Like gRPC's wait-for-ready: a call with a deadline may wait for an
    // endpoint until then; one without waits for the retry window.
    const giveUpAt = ctx.deadline ?? Date.now() + this.options.retryWindowMs;
    let tried: Set<Endpoint<EndpointClients>> | undefined = avoid?.size ? new Set(avoid) : undefined; // made on the first failure only
    let lastError: unknown;
    let round = 0;
    for (;;) {
      let endpoint = this.pool.pick(tried);
      if (!endpoint) {
        // Every endpoint failed this call once: pause, then go round again.
        tried = undefined;
        const pause = Math.min(
          this.options.backoffMinMs * 2 ** round++,
          this.options.backoffMaxMs,
          giveUpAt - Date.now(),
        );
        // If the caller gives up meanwhile, say what was wrong, not just "canceled".
        if (!(await sleep(pause, ctx.signal))) throw toClientError(lastError);
        endpoint = this.pool.pick()!;
      }
      if (ctx.deadline !== undefined && ctx.deadline <= Date.now()) {
        // Out of time: the last upstream failure explains it better.
        throw toClientError(lastError ?? new ConnectError("context deadline exceeded", Code.DeadlineExceeded));
      }
      try {
        const value = await call(endpoint.client);
        this.endpointWorked(endpoint);
        return { endpoint, value };
      } catch (err) {
        if (ctx.signal.aborted) throw toClientError(lastError ?? err);
        const connectionFailure = isConnectionFailure(err);
        if (connectionFailure) this.endpointFailed(endpoint, err);
        const retryable = connectionFailure
          ? policy.mayResend(err)
          : policy.safe && ConnectError.from(err).code === Code.Unavailable;
        if (!retryable || Date.now() >= giveUpAt) throw toClientError(err);
        lastError = err;
        (tried ??= new Set()).add(endpoint);
      }
    }
  }

  private endpointFailed(endpoint: Endpoint<EndpointClients>, err: unknown): void {
    const wasUp = this.pool.isUp(endpoint);
    this.pool.markFailed(endpoint);
    if (wasUp) this.options.onEndpointDown?.(endpoint.url, ConnectError.from(err));
  }

  private endpointWorked(endpoint: Endpoint<EndpointClients>): void {
    if (endpoint.failures > 0) this.options.onEndpointUp?.(endpoint.url);
    this.pool.markHealthy(endpoint);
  }
}

/** When a failed attempt may be sent again. */
interface RepeatPolicy {
  /** Repeating has no effect beyond the first success (reads). */
  safe: boolean;
  /** Whether this particular failure allows sending the call again. */
  mayResend: (err: unknown) => boolean;
}

/** A policy whose safety is only worked out if a failure needs it (decoding a Txn costs). */
class LazyRepeatPolicy implements RepeatPolicy {
  private known: boolean | undefined;
  constructor(private readonly decide: () => boolean) {}
  get safe(): boolean {
    return (this.known ??= this.decide());
  }
  mayResend(err: unknown): boolean {
    return neverReachedEtcd(err) || this.safe;
  }
}

function repeatPolicy(safe: boolean): RepeatPolicy {
  return { safe, mayResend: (err) => safe || neverReachedEtcd(err) };
}

/** The HTTP/2 path of a method, e.g. /etcdserverpb.KV/Range. */
function pathOf(method: DescMethodUnary | DescMethodServerStreaming | DescMethodBiDiStreaming): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Refuses, with etcd's answer, a request over --max-send-bytes (which mirrors etcd's own limit). */
function checkSendLimit(requestFrame: { readonly length: number }, maxSendBytes: number): void {
  if (requestFrame.length - PREFIX_BYTES > maxSendBytes) {
    throw new ConnectError("etcdserver: request is too large", Code.InvalidArgument);
  }
}

/** The metadata a call carries to etcd: the client's forwarded keys, and what is left of its deadline. */
function callMetadata(ctx: CallContext): Readonly<Record<string, string>> {
  const left = remainingMs(ctx);
  return left === undefined ? ctx.forwardHeaders : { ...ctx.forwardHeaders, "grpc-timeout": encodeGrpcTimeout(left) };
}

function remainingMs(ctx: CallContext): number | undefined {
  if (ctx.deadline === undefined) return undefined;
  const left = Math.ceil(ctx.deadline - Date.now());
  if (left <= 0) throw new ConnectError("context deadline exceeded", Code.DeadlineExceeded);
  return left;
}

async function* single<T>(message: T): AsyncIterable<T> {
  yield message;
}

/**
 * Wraps a client's request stream so that a failed attempt neither consumes
 * nor closes it: the next attempt can still send it from the start.
 */
class UntouchedSource<T> implements AsyncIterable<T> {
  private iterator: AsyncIterator<T> | undefined;
  untouched = true;

  /** `check` sees each item as it is taken, and may refuse it by throwing. */
  constructor(
    private readonly source: AsyncIterable<T>,
    private readonly check: (item: T) => void,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        this.untouched = false;
        this.iterator ??= this.source[Symbol.asyncIterator]();
        return this.iterator.next().then((result) => {
          if (!result.done) this.check(result.value);
          return result;
        });
      },
      // Closing and failing are left to the client's own stream: a failed
      // attempt must not end what the next attempt still has to send.
      return: async (value?: unknown) => ({ done: true, value: value as T }),
      throw: async () => ({ done: true, value: undefined as T }),
    };
  }
}
