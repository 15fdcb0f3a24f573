import { isDeepStrictEqual } from "node:util";
import type { Model } from "./linearizability.js";

/**
 * etcd's key-value store as the linearizability checker sees it: one
 * revision for the whole store, raised by every write that changes
 * something, and for each key its value, create and mod revisions, version
 * and lease. Leases are granted with IDs the traffic picks, so a revoke
 * knows which keys it deletes.
 */

export interface KeyValue {
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: number;
}

export interface StoreState {
  revision: number;
  keys: ReadonlyMap<string, KeyValue>;
  /** Granted leases, by ID. */
  leases: ReadonlySet<number>;
}

export type EtcdRequest =
  /** A linearizable range: one key, or [key, end). */
  | { type: "range"; key: string; end?: string }
  | { type: "put"; key: string; value: string; lease?: number }
  | { type: "delete"; key: string }
  /** Compare-and-swap: when key's mod revision is `modRevision` (0: absent), put; else read it. */
  | { type: "txn"; key: string; modRevision: number; value: string }
  | { type: "grant"; lease: number }
  | { type: "revoke"; lease: number };

export type EtcdResponse =
  | { type: "range"; revision: number; kvs: Array<{ key: string } & KeyValue> }
  | { type: "put"; revision: number }
  | { type: "delete"; revision: number; deleted: number }
  | { type: "txn"; revision: number; succeeded: boolean }
  | { type: "grant"; revision: number }
  | { type: "revoke"; revision: number }
  /** etcd refused it (a lease not found, ...): such an answer changes nothing. */
  | { type: "error"; message: string };

/** The store as a new cluster has it, or a prefix nobody has written to yet at `revision`. */
export function emptyStore(revision = 1): StoreState {
  return { revision, keys: new Map(), leases: new Set() };
}

/** The model, starting from `initial`. */
export function storeModel(initial: StoreState): Model<StoreState, EtcdRequest, EtcdResponse> {
  return { ...etcdModel, init: () => initial };
}

export const etcdModel: Model<StoreState, EtcdRequest, EtcdResponse> = {
  init: () => emptyStore(),
  step(state, request, response) {
    const [next, expected] = apply(state, request);
    // No answer came: it may have taken effect, or not. Reads never change anything.
    if (response === undefined) return next === state ? [state] : [state, next];
    return matches(expected, response) ? [next] : [];
  },
  key(state) {
    const parts = [String(state.revision)];
    for (const [k, v] of [...state.keys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      parts.push(`${k}=${v.value}@${v.createRevision}/${v.modRevision}/${v.version}/${v.lease}`);
    }
    if (state.leases.size > 0) parts.push(`leases:${[...state.leases].sort((a, b) => a - b).join(",")}`);
    return parts.join("\n");
  },
};

/** What the request does to the store, and what etcd answers. */
export function apply(state: StoreState, request: EtcdRequest): [StoreState, EtcdResponse] {
  switch (request.type) {
    case "range": {
      const kvs = [...state.keys]
        .filter(([k]) => (request.end === undefined ? k === request.key : k >= request.key && k < request.end))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([key, kv]) => ({ key, ...kv }));
      return [state, { type: "range", revision: state.revision, kvs }];
    }
    case "put": {
      const lease = request.lease ?? 0;
      if (lease !== 0 && !state.leases.has(lease)) {
        return [state, { type: "error", message: "etcdserver: requested lease not found" }];
      }
      const next = put(state, request.key, request.value, lease);
      return [next, { type: "put", revision: next.revision }];
    }
    case "delete": {
      if (!state.keys.has(request.key)) return [state, { type: "delete", revision: state.revision, deleted: 0 }];
      const next = remove(state, [request.key]);
      return [next, { type: "delete", revision: next.revision, deleted: 1 }];
    }
    case "txn": {
      const current = state.keys.get(request.key)?.modRevision ?? 0;
      if (current !== request.modRevision) return [state, { type: "txn", revision: state.revision, succeeded: false }];
      const next = put(state, request.key, request.value, 0);
      return [next, { type: "txn", revision: next.revision, succeeded: true }];
    }
    case "grant": {
      if (state.leases.has(request.lease))
        return [state, { type: "error", message: "etcdserver: lease already exists" }];
      return [
        { ...state, leases: new Set([...state.leases, request.lease]) },
        { type: "grant", revision: state.revision },
      ];
    }
    case "revoke": {
      if (!state.leases.has(request.lease)) {
        return [state, { type: "error", message: "etcdserver: requested lease not found" }];
      }
      const attached = [...state.keys].filter(([, kv]) => kv.lease === request.lease).map(([k]) => k);
      const leases = new Set(state.leases);
      leases.delete(request.lease);
      const next = { ...(attached.length > 0 ? remove(state, attached) : state), leases };
      return [next, { type: "revoke", revision: next.revision }];
    }
  }
}

function put(state: StoreState, key: string, value: string, lease: number): StoreState {
  const revision = state.revision + 1;
  const before = state.keys.get(key);
  const keys = new Map(state.keys);
  keys.set(key, {
    value,
    createRevision: before?.createRevision ?? revision,
    modRevision: revision,
    version: (before?.version ?? 0) + 1,
    lease,
  });
  return { ...state, revision, keys };
}

/** Deletes keys in one revision, as a revoke or a delete does. */
function remove(state: StoreState, doomed: string[]): StoreState {
  const keys = new Map(state.keys);
  for (const k of doomed) keys.delete(k);
  return { ...state, revision: state.revision + 1, keys };
}

function matches(expected: EtcdResponse, seen: EtcdResponse): boolean {
  return isDeepStrictEqual(expected, seen);
}

/** The watch events one step made: a PUT for each key it wrote, a DELETE for each it removed, by key. */
export function eventsBetween(
  before: StoreState,
  after: StoreState,
): Array<{ type: "PUT" | "DELETE"; key: string; value: string; modRevision: number; prevValue: string | undefined }> {
  if (after.revision === before.revision) return [];
  const keys = [...new Set([...before.keys.keys(), ...after.keys.keys()])].sort();
  const events = [];
  for (const key of keys) {
    const was = before.keys.get(key);
    const now = after.keys.get(key);
    if (now && now.modRevision === after.revision) {
      events.push({ type: "PUT" as const, key, value: now.value, modRevision: after.revision, prevValue: was?.value });
    } else if (was && !now) {
      events.push({ type: "DELETE" as const, key, value: "", modRevision: after.revision, prevValue: was.value });
    }
  }
  return events;
}
