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

/**
 * The model, starting from `initial`. `foreign` holds the revisions that
 * writers outside the checked keys made (another client, a leasing proxy's
 * own keys): a write of the history takes the next revision not among them,
 * and an answer that changed nothing may carry any revision from the
 * model's up to the next write's, since foreign writes may come first.
 * `readsMayLag` lets a read's revision be older (its keys must still be
 * current): the caller then checks that revision against the truth.
 */
export function storeModel(
  initial: StoreState,
  foreign: ReadonlySet<number> = new Set(),
  { readsMayLag = false }: { readsMayLag?: boolean } = {},
): Model<StoreState, EtcdRequest, EtcdResponse> {
  const after = (revision: number) => {
    let next = revision + 1;
    while (foreign.has(next)) next++;
    return next;
  };
  return {
    init: () => initial,
    step(state, request, response) {
      const [next, expected] = apply(state, request, after);
      // No answer came: it may have taken effect, or not. Reads never change anything.
      if (response === undefined) return next === state ? [state] : [state, next];
      if (response.type === "error" || next.revision !== state.revision) {
        return matches(expected, response) ? [next] : [];
      }
      // No revision made: the answer's may be any from here to the next write's, or, for a read whose
      // revision may lag (etcd's leasing answers with the revision it took the key at), any before.
      const lagging = readsMayLag && response.type === "range";
      if ((response.revision < state.revision && !lagging) || response.revision >= after(state.revision)) return [];
      return matches(expected, { ...response, revision: state.revision }) ? [next] : [];
    },
    key: stateKey,
  };
}

/** The model of a store nobody else writes to, from a new cluster. */
export const etcdModel = storeModel(emptyStore());

/** Equal stores, equal keys: what the checker remembers. */
function stateKey(state: StoreState): string {
  const parts = [String(state.revision)];
  for (const [k, v] of [...state.keys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    parts.push(`${k}=${v.value}@${v.createRevision}/${v.modRevision}/${v.version}/${v.lease}`);
  }
  if (state.leases.size > 0) parts.push(`leases:${[...state.leases].sort((a, b) => a - b).join(",")}`);
  return parts.join("\n");
}

/** What the request does to the store, and what etcd answers; `after` gives a write's revision. */
export function apply(
  state: StoreState,
  request: EtcdRequest,
  after: (revision: number) => number = (r) => r + 1,
): [StoreState, EtcdResponse] {
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
      const next = put(state, request.key, request.value, lease, after);
      return [next, { type: "put", revision: next.revision }];
    }
    case "delete": {
      if (!state.keys.has(request.key)) return [state, { type: "delete", revision: state.revision, deleted: 0 }];
      const next = remove(state, [request.key], after);
      return [next, { type: "delete", revision: next.revision, deleted: 1 }];
    }
    case "txn": {
      const current = state.keys.get(request.key)?.modRevision ?? 0;
      if (current !== request.modRevision) return [state, { type: "txn", revision: state.revision, succeeded: false }];
      const next = put(state, request.key, request.value, 0, after);
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
      const next = { ...(attached.length > 0 ? remove(state, attached, after) : state), leases };
      return [next, { type: "revoke", revision: next.revision }];
    }
  }
}

function put(
  state: StoreState,
  key: string,
  value: string,
  lease: number,
  after: (revision: number) => number,
): StoreState {
  const revision = after(state.revision);
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
function remove(state: StoreState, doomed: string[], after: (revision: number) => number): StoreState {
  const keys = new Map(state.keys);
  for (const k of doomed) keys.delete(k);
  return { ...state, revision: after(state.revision), keys };
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
