/**
 * Serializable reads may be stale, so linearizability says nothing about
 * them; what they must be is true: the keys a read returns are exactly what
 * the store held at the revision its header claims, and that revision had
 * happened. Each is checked against the store's true history (the events a
 * watch of the keys saw from a revision at which none existed).
 *
 * Two figures go with it: how many reads were stale (behind a write that
 * had been acknowledged before they were sent), and how many went back in
 * revision (behind a Range answer that came before they were sent), which
 * only --experimental-serializable-ordering forbids.
 */
import type { KeyValue } from "./etcd-model.js";
import type { Recorded } from "./traffic.js";
import type { TrueHistory } from "./watch-validation.js";

export interface SerializableRead {
  client: number;
  key: string;
  /** [key, end) when set. */
  end?: string | undefined;
  call: number;
  return: number;
  /** The header's revision. */
  revision: number;
  kvs: Array<{ key: string } & KeyValue>;
}

export interface SerializableReadReport {
  /** Reads whose keys were not the store's at the revision they claim. */
  untrue: Array<{ client: number; revision: number; detail: string }>;
  stale: number;
  /** Reads behind a Range answer that came before they were sent. */
  backwards: number;
}

export function checkSerializableReads(
  reads: readonly SerializableRead[],
  truth: TrueHistory,
  operations: readonly Recorded[],
  /** The store's revision once the traffic had stopped. */
  lastRevision: number,
): SerializableReadReport {
  const revisions = [...truth.keys()].sort((a, b) => a - b);
  const acknowledged = operations
    .filter((op) => op.output !== undefined && op.output.type !== "error" && op.output.type !== "range")
    .map((op) => ({ at: op.return, revision: (op.output as { revision: number }).revision }));
  const ranges = [
    ...operations
      .filter((op) => op.output?.type === "range")
      .map((op) => ({ at: op.return, revision: (op.output as { revision: number }).revision })),
    ...reads.map((r) => ({ at: r.return, revision: r.revision })),
  ];
  const report: SerializableReadReport = { untrue: [], stale: 0, backwards: 0 };
  for (const read of reads) {
    const inRange = (k: string) => (read.end === undefined ? k === read.key : k >= read.key && k < read.end);
    if (read.revision > lastRevision) {
      report.untrue.push({
        client: read.client,
        revision: read.revision,
        detail: `claims a revision past ${lastRevision}`,
      });
      continue;
    }
    const expected = new Map<string, { value: string; modRevision: number }>();
    for (const r of revisions) {
      if (r > read.revision) break;
      for (const e of truth.get(r)!) {
        if (!inRange(e.key)) continue;
        if (e.type === "PUT") expected.set(e.key, { value: e.value, modRevision: r });
        else expected.delete(e.key);
      }
    }
    const got = read.kvs.map((kv) => `${kv.key}=${kv.value}@${kv.modRevision}`).join(", ");
    const want = [...expected]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${v.value}@${v.modRevision}`)
      .join(", ");
    if (got !== want) {
      report.untrue.push({
        client: read.client,
        revision: read.revision,
        detail: `read [${got}] at ${read.revision}, the store held [${want}]`,
      });
    }
    if (acknowledged.some((w) => w.at < read.call && w.revision > read.revision)) report.stale++;
    if (ranges.some((r) => r.at < read.call && r.revision > read.revision)) report.backwards++;
  }
  return report;
}
