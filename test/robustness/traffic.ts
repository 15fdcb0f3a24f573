/**
 * Traffic for the robustness suite: concurrent clients (grpc-js, a client
 * independent of the proxy) that send etcd-like requests under one key
 * prefix and record, for each, when it was sent, when its answer came and
 * what it was, for the linearizability checker; and a watch over the prefix
 * whose every response is kept, for watch validation.
 */
import type { Operation } from "./linearizability.js";
import type { EtcdRequest, EtcdResponse, KeyValue } from "./etcd-model.js";
import type { WatchResponseShape, WatchedEvent } from "./watch-validation.js";
import { EtcdGrpcClient, type GrpcError } from "../helpers/grpc-client.js";
import { seededRandom } from "../helpers/random.js";

export type Recorded = Operation<EtcdRequest, EtcdResponse>;

export interface TrafficOptions {
  /** host:port the clients talk to: the proxy, or etcd itself. */
  target: string;
  /** Every key the traffic touches starts with it; the model sees keys without it. */
  prefix: string;
  clients: number;
  durationMs: number;
  /** Lease IDs are taken from here up, so that runs do not collide. */
  leaseBase: number;
  /** Seeds the choice of requests, so that a failing run can be replayed. */
  seed: number;
  /** Stops the traffic early. */
  signal?: AbortSignal;
}

const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`);
const UNKNOWN_OUTCOME = new Set([1, 4, 13, 14]); // CANCELLED, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE

/** Runs the traffic; resolves with every operation, answered or not (reads that failed are left out: they did nothing). */
export async function runTraffic(options: TrafficOptions): Promise<Recorded[]> {
  const history: Recorded[] = [];
  const deadline = performance.now() + options.durationMs;
  let nextLease = options.leaseBase;
  const grantedLeases: number[] = [];
  await Promise.all(
    Array.from({ length: options.clients }, async (_, client) => {
      const etcd = new EtcdGrpcClient(options.target);
      const random = seededRandom(options.seed * 1000 + client);
      const knownMod = new Map<string, number>();
      let n = 0;
      try {
        while (performance.now() < deadline && !options.signal?.aborted) {
          const request = chooseRequest(random, client, n++, knownMod, grantedLeases, () => nextLease++);
          const op: Recorded = { client, input: request, call: performance.now(), return: Infinity, output: undefined };
          try {
            op.output = await send(etcd, options.prefix, request);
            op.return = performance.now();
            if (op.output.type === "range") for (const kv of op.output.kvs) knownMod.set(kv.key, kv.modRevision);
            if (request.type === "grant" && op.output.type === "grant") grantedLeases.push(request.lease);
          } catch (err) {
            const { code, details } = err as GrpcError;
            if (!UNKNOWN_OUTCOME.has(code)) {
              op.output = { type: "error", message: details };
              op.return = performance.now();
            } else if (request.type === "range") {
              continue; // a read that failed changed nothing
            }
          }
          history.push(op);
        }
      } finally {
        etcd.close();
      }
    }),
  );
  return history;
}

function chooseRequest(
  random: () => number,
  client: number,
  n: number,
  knownMod: Map<string, number>,
  leases: number[],
  newLease: () => number,
): EtcdRequest {
  const key = KEYS[Math.floor(random() * KEYS.length)]!;
  const value = `${client}-${n}`;
  const roll = random();
  if (roll < 0.3) return { type: "range", key };
  if (roll < 0.4) return { type: "range", key: KEYS[0]!, end: "l" };
  if (roll < 0.65) return { type: "put", key, value };
  if (roll < 0.72) return { type: "delete", key };
  if (roll < 0.87) return { type: "txn", key, modRevision: knownMod.get(key) ?? 0, value };
  if (roll < 0.92 || leases.length === 0) return { type: "grant", lease: newLease() };
  const lease = leases[Math.floor(random() * leases.length)]!;
  if (roll < 0.97) return { type: "put", key, value, lease };
  return { type: "revoke", lease };
}

async function send(etcd: EtcdGrpcClient, prefix: string, request: EtcdRequest): Promise<EtcdResponse> {
  const full = (k: string) => Buffer.from(prefix + k);
  const revisionOf = (r: Record<string, unknown>) => Number((r.header as { revision: string }).revision);
  switch (request.type) {
    case "range": {
      const r = await etcd.unary("KV", "Range", {
        key: full(request.key),
        range_end: request.end === undefined ? undefined : full(request.end),
      });
      return { type: "range", revision: revisionOf(r), kvs: (r.kvs as RawKv[]).map((kv) => keyValue(kv, prefix)) };
    }
    case "put": {
      const r = await etcd.unary("KV", "Put", {
        key: full(request.key),
        value: Buffer.from(request.value),
        lease: request.lease ?? 0,
      });
      return { type: "put", revision: revisionOf(r) };
    }
    case "delete": {
      const r = await etcd.unary("KV", "DeleteRange", { key: full(request.key) });
      return { type: "delete", revision: revisionOf(r), deleted: Number(r.deleted) };
    }
    case "txn": {
      const r = await etcd.unary("KV", "Txn", {
        compare: [{ key: full(request.key), target: "MOD", result: "EQUAL", mod_revision: request.modRevision }],
        success: [{ request_put: { key: full(request.key), value: Buffer.from(request.value) } }],
        failure: [{ request_range: { key: full(request.key) } }],
      });
      return { type: "txn", revision: revisionOf(r), succeeded: Boolean(r.succeeded) };
    }
    case "grant": {
      const r = await etcd.unary("Lease", "LeaseGrant", { ID: request.lease, TTL: 120 });
      if (r.error) return { type: "error", message: String(r.error) };
      return { type: "grant", revision: revisionOf(r) };
    }
    case "revoke": {
      const r = await etcd.unary("Lease", "LeaseRevoke", { ID: request.lease });
      return { type: "revoke", revision: revisionOf(r) };
    }
  }
}

interface RawKv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

function keyValue(kv: RawKv, prefix: string): { key: string } & KeyValue {
  return {
    key: kv.key.toString().slice(prefix.length),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: Number(kv.lease),
  };
}

export interface RecordedWatch {
  responses: WatchResponseShape[];
  /** Ends the watch; resolves once it has. */
  stop(): Promise<void>;
}

/**
 * A watch over the prefix from `startRevision`, with prev_kv; when
 * `progressEveryMs` is set it asks for progress that often, as Kubernetes
 * does. Every response is kept, its keys without the prefix.
 */
export function recordWatch(
  target: string,
  prefix: string,
  startRevision: number,
  progressEveryMs?: number,
): RecordedWatch {
  const etcd = new EtcdGrpcClient(target);
  const call = etcd.stream("Watch", "Watch");
  const responses: WatchResponseShape[] = [];
  const ended = new Promise<void>((resolve) => {
    call.on("error", () => resolve());
    call.on("end", () => resolve());
  });
  call.on("data", (r: RawWatchResponse) => {
    const revision = Number(r.header.revision);
    if (r.created) responses.push({ kind: "created", revision });
    else if (r.watch_id === "-1" || (r.events.length === 0 && !r.canceled))
      responses.push({ kind: "progress", revision });
    else if (r.events.length > 0)
      responses.push({ kind: "events", events: r.events.map((e) => watchedEvent(e, prefix)) });
  });
  const end = Buffer.from(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1));
  call.write({
    create_request: { key: Buffer.from(prefix), range_end: end, start_revision: startRevision, prev_kv: true },
  });
  const asking = progressEveryMs ? setInterval(() => call.write({ progress_request: {} }), progressEveryMs) : undefined;
  return {
    responses,
    async stop() {
      clearInterval(asking);
      call.cancel();
      await ended;
      etcd.close();
    },
  };
}

interface RawWatchResponse {
  header: { revision: string };
  watch_id: string;
  created: boolean;
  canceled: boolean;
  /** proto-loader gives enums as numbers: 0 PUT, 1 DELETE. */
  events: Array<{ type: "PUT" | "DELETE" | number; kv: RawKv; prev_kv: RawKv | null }>;
}

function watchedEvent(e: RawWatchResponse["events"][number], prefix: string): WatchedEvent {
  return {
    type: e.type === "DELETE" || e.type === 1 ? "DELETE" : "PUT",
    key: e.kv.key.toString().slice(prefix.length),
    value: e.type === "DELETE" ? "" : e.kv.value.toString(),
    modRevision: Number(e.kv.mod_revision),
    prevValue: e.prev_kv ? e.prev_kv.value.toString() : undefined,
  };
}
