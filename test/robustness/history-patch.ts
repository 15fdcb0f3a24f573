/**
 * Writes whose answer never came may or may not have happened, and each such
 * write multiplies what the linearizability checker must consider. The true
 * history settles most of them, as etcd's robustness suite does:
 * - every value the traffic writes is unique, so a put or a compare-and-swap
 *   whose value the truth shows happened then, and one whose value it never
 *   shows did nothing;
 * - a delete of a key happened at a deletion of it that no answered
 *   operation explains, when there is exactly one such deletion and one such
 *   delete; with none, it deleted nothing, which changes nothing;
 * - a grant's lease is used only once its grant was answered, so a grant
 *   without an answer cannot be seen: leaving it out changes nothing.
 * Revokes, and deletes the truth cannot tell apart, stay open.
 */
import type { Recorded } from "./traffic.js";
import type { TrueHistory } from "./watch-validation.js";

export function settleUnanswered(operations: readonly Recorded[], truth: TrueHistory): Recorded[] {
  // Revisions an answered write certainly made, and those a revoke may have (or merely reported).
  const made = new Set<number>();
  const revoked = new Set<number>();
  for (const { output } of operations) {
    if (output?.type === "put" || (output?.type === "txn" && output.succeeded)) made.add(output.revision);
    if (output?.type === "delete" && output.deleted > 0) made.add(output.revision);
    if (output?.type === "revoke") revoked.add(output.revision);
  }
  const writtenAt = new Map<string, number>();
  const unexplainedDeletions = new Map<string, number[]>();
  for (const [revision, events] of truth) {
    for (const e of events) {
      if (e.type === "PUT") writtenAt.set(`${e.key}\n${e.value}`, revision);
      else if (!made.has(revision))
        unexplainedDeletions.set(e.key, [...(unexplainedDeletions.get(e.key) ?? []), revision]);
    }
  }
  const unanswered = operations.filter((op) => op.output === undefined);
  const openRevoke = unanswered.some((op) => op.input.type === "revoke");
  const openDeletesOf = (key: string) =>
    unanswered.filter((op) => op.input.type === "delete" && op.input.key === key).length;

  const settled: Recorded[] = [];
  for (const op of operations) {
    const { input } = op;
    if (op.output !== undefined) {
      settled.push(op);
    } else if (input.type === "put" || input.type === "txn") {
      const revision = writtenAt.get(`${input.key}\n${input.value}`);
      if (revision === undefined) continue; // it never happened (or, a compare-and-swap, it only read)
      settled.push({
        ...op,
        output: input.type === "put" ? { type: "put", revision } : { type: "txn", revision, succeeded: true },
      });
    } else if (input.type === "delete") {
      const deletions = unexplainedDeletions.get(input.key) ?? [];
      if (deletions.length === 0) continue; // it deleted nothing
      const [only] = deletions;
      const certain = deletions.length === 1 && !revoked.has(only!) && !openRevoke && openDeletesOf(input.key) === 1;
      settled.push(certain ? { ...op, output: { type: "delete", revision: only!, deleted: 1 } } : op);
    } else if (input.type !== "grant") {
      settled.push(op);
    }
  }
  return settled;
}
