/**
 * What a watch must deliver, checked against the store's true history, as
 * etcd's robustness suite checks its watches:
 * - ordered: revisions only grow, and a new response starts past the last;
 * - unique: no event twice;
 * - atomic: a revision's events come whole, in one response;
 * - reliable: from where the watch starts to the last revision it was told
 *   of, no event is missing, and each is the true one;
 * - bookmarkable: a progress notification at R comes after every event up
 *   to R and before every event past it;
 * - prev_kv and filters as asked;
 * - compacted: a watch ends on a compaction only when it asked for a
 *   revision the compaction had removed, and then nothing more comes.
 */

export interface WatchedEvent {
  type: "PUT" | "DELETE";
  key: string;
  value: string;
  modRevision: number;
  /** What the key held before, when the watch asked for prev_kv. */
  prevValue?: string | undefined;
}

/** The store's events, each revision's in the order etcd applied them. */
export type TrueHistory = ReadonlyMap<number, ReadonlyArray<WatchedEvent & { prevValue: string | undefined }>>;

export interface WatchRequestShape {
  key: string;
  /** [key, end) when set. */
  end?: string;
  /** 0: from the revision the watch was created at. */
  startRevision: number;
  prevKv?: boolean;
  noPut?: boolean;
  noDelete?: boolean;
}

export type WatchResponseShape =
  | { kind: "created"; revision: number }
  | { kind: "events"; events: WatchedEvent[] }
  | { kind: "progress"; revision: number }
  /** Cancelled by a compaction at `revision`, on a (re)start from `requested`. */
  | { kind: "compacted"; revision: number; requested: number };

/**
 * The traffic's own events (keys under `stored`, the prefix taken off), by
 * revision, from the truth watch straight to etcd, and the revisions other
 * writers made. etcd leaves an event's prev_kv out when the revision before
 * it is compacted by the time it sends the event, to this watch as to any:
 * where it did, and the watch saw the key's previous event, that event says
 * what the key held.
 */
export function trueHistory(
  responses: readonly WatchResponseShape[],
  stored: string,
): { truth: TrueHistory; foreign: Set<number> } {
  const truth = new Map<number, Array<WatchedEvent & { prevValue: string | undefined }>>();
  const foreign = new Set<number>();
  const held = new Map<string, string | undefined>();
  for (const r of responses) {
    if (r.kind !== "events") continue;
    for (const e of r.events) {
      if (!e.key.startsWith(stored)) {
        foreign.add(e.modRevision);
        continue;
      }
      const key = e.key.slice(stored.length);
      const prevValue = e.prevValue ?? held.get(key);
      held.set(key, e.type === "PUT" ? e.value : undefined);
      const at = truth.get(e.modRevision) ?? [];
      at.push({ ...e, key, prevValue });
      truth.set(e.modRevision, at);
    }
  }
  return { truth, foreign };
}

export type WatchRule =
  "ordered" | "unique" | "atomic" | "reliable" | "bookmarkable" | "prev_kv" | "filter" | "true" | "compacted";

export interface WatchViolation {
  rule: WatchRule;
  revision: number;
  detail: string;
}

export function validateWatch(
  request: WatchRequestShape,
  responses: readonly WatchResponseShape[],
  truth: TrueHistory,
): WatchViolation[] {
  const violations: WatchViolation[] = [];
  const flag = (rule: WatchRule, revision: number, detail: string) => violations.push({ rule, revision, detail });
  const inRange = (key: string) =>
    request.end === undefined ? key === request.key : key >= request.key && key < request.end;
  const wanted = (e: WatchedEvent) =>
    inRange(e.key) && !(request.noPut && e.type === "PUT") && !(request.noDelete && e.type === "DELETE");
  const expectedAt = (revision: number) => (truth.get(revision) ?? []).filter(wanted);

  const created = responses.find((r) => r.kind === "created");
  const from = request.startRevision > 0 ? request.startRevision : (created?.revision ?? 0) + 1;
  let last = 0; // the last revision delivered
  let told = from - 1; // the last revision the watch vouched for: events, or progress
  const delivered = new Set<number>();
  const seen = new Set<string>();
  const claims: Array<{ revision: number; deliveredBefore: ReadonlySet<number> }> = [];
  for (const response of responses) {
    if (response.kind === "created") continue;
    if (response.kind === "compacted") {
      if (response.revision <= response.requested) {
        flag(
          "compacted",
          response.revision,
          `cancelled as compacted at ${response.revision}, asked from ${response.requested}`,
        );
      }
      if (response !== responses[responses.length - 1])
        flag("compacted", response.revision, "responses after the cancel");
      break;
    }
    if (response.kind === "progress") {
      if (response.revision < last) {
        flag("bookmarkable", response.revision, `progress at ${response.revision} after an event at ${last}`);
      }
      claims.push({ revision: response.revision, deliveredBefore: new Set(delivered) });
      told = Math.max(told, response.revision);
      continue;
    }
    const revisions = [...new Set(response.events.map((e) => e.modRevision))];
    if (response.events.length > 0 && response.events[0]!.modRevision <= last) {
      flag(
        last === response.events[0]!.modRevision ? "atomic" : "ordered",
        response.events[0]!.modRevision,
        `a response starts at ${response.events[0]!.modRevision} after ${last}`,
      );
    }
    for (let i = 1; i < response.events.length; i++) {
      if (response.events[i]!.modRevision < response.events[i - 1]!.modRevision) {
        flag(
          "ordered",
          response.events[i]!.modRevision,
          `${response.events[i]!.modRevision} after ${response.events[i - 1]!.modRevision}`,
        );
      }
    }
    for (const e of response.events) {
      const id = `${e.modRevision}/${e.key}`;
      if (seen.has(id)) flag("unique", e.modRevision, `${e.key} at ${e.modRevision} twice`);
      seen.add(id);
      if (!wanted(e)) flag("filter", e.modRevision, `${e.type} ${e.key} was filtered out or outside the range`);
      if (e.modRevision < from)
        flag("reliable", e.modRevision, `${e.key} at ${e.modRevision}, before the start ${from}`);
      const real = (truth.get(e.modRevision) ?? []).find((t) => t.key === e.key);
      if (!real || real.type !== e.type || real.value !== e.value) {
        flag("true", e.modRevision, `${e.type} ${e.key}=${e.value} is not what happened at ${e.modRevision}`);
      } else if (request.prevKv && e.prevValue !== real.prevValue) {
        flag("prev_kv", e.modRevision, `${e.key}: prev_kv ${String(e.prevValue)}, was ${String(real.prevValue)}`);
      }
    }
    for (const r of revisions) {
      if (delivered.has(r)) continue;
      const got = response.events.filter((e) => e.modRevision === r).map((e) => `${e.type} ${e.key}`);
      const want = expectedAt(r).map((e) => `${e.type} ${e.key}`);
      if (got.join() !== want.join())
        flag("atomic", r, `revision ${r} came as [${got.join(", ")}], was [${want.join(", ")}]`);
      delivered.add(r);
    }
    if (revisions.length > 0) {
      last = Math.max(last, ...revisions);
      told = Math.max(told, last);
    }
  }
  // Everything the watch vouched for, by an event past it or a progress notification, must have come.
  for (let r = from; r <= told; r++) {
    if (!delivered.has(r) && expectedAt(r).length > 0) flag("reliable", r, `the events of ${r} never came`);
  }
  // A progress notification tells that every event up to it has gone out already.
  for (const claim of claims) {
    for (let r = from; r <= claim.revision; r++) {
      if (delivered.has(r) && !claim.deliveredBefore.has(r)) {
        flag("bookmarkable", r, `progress at ${claim.revision} came before the events of ${r}`);
      }
    }
  }
  return violations;
}
