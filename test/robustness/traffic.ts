/**
 * Traffic for the robustness suite: concurrent clients (grpc-js, a client
 * independent of the proxy) that send etcd-like requests under one key
 * prefix and record, for each, when it was sent, when its answer came and
 * what it was: linearizable operations for the linearizability checker,
 * serializable reads for the check against the revision they claim.
 */
import type { Operation } from "./linearizability.js";
import type { EtcdRequest, EtcdResponse, KeyValue } from "./etcd-model.js";
import type { SerializableRead } from "./serializable-reads.js";
import { EtcdGrpcClient, UNLIMITED, type GrpcError } from "../helpers/grpc-client.js";
import { padValue, unpadValue } from "./padding.js";
import { seededRandom } from "../helpers/random.js";

export type Recorded = Operation<EtcdRequest, EtcdResponse>;

export interface TrafficOptions {
  /** host:port the clients talk to (the proxy, or etcd itself); client i uses targets[i % length]. */
  targets: string[];
  /** Every key the traffic touches starts with it; the model sees keys without it. */
  prefix: string;
  clients: number;
  durationMs: number;
  /** Lease IDs are taken from here up, so that runs do not collide. */
  leaseBase: number;
  /** Seeds the choice of requests, so that a failing run can be replayed. */
  seed: number;
  /** Some reads are serializable. */
  serializableReads: boolean;
  /** Values are padded to this length (0: none), so that reads of many keys are large answers, relayed as they arrive. */
  valueBytes?: number;
  /** Stops the traffic early. */
  signal?: AbortSignal;
}

export interface TrafficHistory {
  /** Every linearizable operation, answered or not (reads that failed are left out: they did nothing). */
  operations: Recorded[];
  /** Every serializable read that was answered. */
  serializableReads: SerializableRead[];
}

const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`);
/**
 * Refusals the model foresees, which change nothing: NOT_FOUND ("requested
 * lease not found") and FAILED_PRECONDITION ("lease already exists"). Any
 * other failure (a timeout, a lost connection, etcd's "raft proposal
 * dropped" during a leader move) leaves the outcome open.
 */
const FORESEEN = new Set([5, 9]);

/** Whether a failed request surely did nothing, as the model foresees; otherwise it may have happened. */
export function foreseenFailure(code: number): boolean {
  return FORESEEN.has(code);
}
const BACK_OFF_MS = 100;

type Choice = EtcdRequest | { type: "serializable"; key: string; end?: string };

export async function runTraffic(options: TrafficOptions): Promise<TrafficHistory> {
  const operations: Recorded[] = [];
  const serializableReads: SerializableRead[] = [];
  const deadline = performance.now() + options.durationMs;
  let nextLease = options.leaseBase;
  const grantedLeases: number[] = [];
  await Promise.all(
    Array.from({ length: options.clients }, async (_, client) => {
      const etcd = new EtcdGrpcClient(options.targets[client % options.targets.length]!, undefined, UNLIMITED);
      const random = seededRandom(options.seed * 1000 + client);
      const knownMod = new Map<string, number>();
      let n = 0;
      try {
        while (performance.now() < deadline && !options.signal?.aborted) {
          const choice = chooseRequest(random, client, n++, knownMod, grantedLeases, () => nextLease++);
          if (choice.type === "serializable" && options.serializableReads) {
            const { key, end } = choice;
            const call = performance.now();
            const read = await readSerializable(etcd, options.prefix, key, end).catch(() => undefined);
            if (read) serializableReads.push({ client, key, end, call, return: performance.now(), ...read });
            continue;
          }
          const request: EtcdRequest = choice.type === "serializable" ? { ...choice, type: "range" } : choice;
          const op: Recorded = { client, input: request, call: performance.now(), return: Infinity, output: undefined };
          try {
            op.output = await send(etcd, options.prefix, request, options.valueBytes ?? 0);
            op.return = performance.now();
            if (op.output.type === "range") for (const kv of op.output.kvs) knownMod.set(kv.key, kv.modRevision);
            if (request.type === "grant" && op.output.type === "grant") grantedLeases.push(request.lease);
          } catch (err) {
            const { code, details } = err as GrpcError;
            if (foreseenFailure(code)) {
              op.output = { type: "error", message: details };
              op.return = performance.now();
            } else {
              await new Promise((r) => setTimeout(r, BACK_OFF_MS)); // the target may be down: do not spin
              if (request.type === "range") continue; // a read that failed changed nothing
            }
          }
          operations.push(op);
        }
      } finally {
        etcd.close();
      }
    }),
  );
  return { operations, serializableReads };
}

function chooseRequest(
  random: () => number,
  client: number,
  n: number,
  knownMod: Map<string, number>,
  leases: number[],
  newLease: () => number,
): Choice {
  const key = KEYS[Math.floor(random() * KEYS.length)]!;
  const value = `${client}-${n}`;
  const roll = random();
  if (roll < 0.22) return { type: "range", key };
  if (roll < 0.3) return { type: "serializable", key };
  if (roll < 0.35) return { type: "range", key: KEYS[0]!, end: "l" };
  if (roll < 0.4) return { type: "serializable", key: KEYS[0]!, end: "l" };
  if (roll < 0.65) return { type: "put", key, value };
  if (roll < 0.72) return { type: "delete", key };
  if (roll < 0.87) return { type: "txn", key, modRevision: knownMod.get(key) ?? 0, value };
  if (roll < 0.92 || leases.length === 0) return { type: "grant", lease: newLease() };
  const lease = leases[Math.floor(random() * leases.length)]!;
  if (roll < 0.97) return { type: "put", key, value, lease };
  return { type: "revoke", lease };
}

async function readSerializable(
  etcd: EtcdGrpcClient,
  prefix: string,
  key: string,
  end: string | undefined,
): Promise<Pick<SerializableRead, "revision" | "kvs">> {
  const r = await etcd.unary("KV", "Range", {
    key: Buffer.from(prefix + key),
    range_end: end === undefined ? undefined : Buffer.from(prefix + end),
    serializable: true,
  });
  const revision = Number((r.header as { revision: string }).revision);
  return { revision, kvs: (r.kvs as RawKv[]).map((kv) => keyValue(kv, prefix)) };
}

async function send(
  etcd: EtcdGrpcClient,
  prefix: string,
  request: EtcdRequest,
  valueBytes: number,
): Promise<EtcdResponse> {
  const full = (k: string) => Buffer.from(prefix + k);
  const value = (bare: string) => Buffer.from(padValue(bare, valueBytes));
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
        value: value(request.value),
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
        success: [{ request_put: { key: full(request.key), value: value(request.value) } }],
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

export interface RawKv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

export function keyValue(kv: RawKv, prefix: string): { key: string } & KeyValue {
  return {
    key: kv.key.toString().slice(prefix.length),
    value: unpadValue(kv.value.toString()),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: Number(kv.lease),
  };
}
