/**
 * A robustness run on a target the harness started, with a fault if asked,
 * and the judgement of its report: what a run must show to pass. The
 * integration test and `npm run robustness` both judge by it.
 */
import type { EtcdCluster } from "../helpers/etcd.js";
import { faultApplies, injectFault, type FaultName } from "./faults.js";
import { runRobustness, type RunReport } from "./runner.js";
import type { Target } from "./targets.js";

export interface SuiteRun {
  traffic: "etcd" | "kubernetes";
  seconds: number;
  clients?: number;
  valueBytes?: number;
  seed?: number;
  fault?: FaultName;
  dumpTo?: string;
}

/** A run against a target; `cluster` when the harness started it (faults on its processes need it). */
export function runOn(
  target: Target,
  etcd: { endpoints: string[]; cluster?: EtcdCluster },
  run: SuiteRun,
): Promise<RunReport> {
  const { cluster } = etcd;
  const context = { restartTarget: target.restart, cluster: target.memberInUse && cluster };
  const fault = run.fault && faultApplies(run.fault, context) ? run.fault : undefined;
  let compactedUpTo: number | undefined;
  const compacted = (revision: number) => (compactedUpTo = Math.max(compactedUpTo ?? 0, revision));
  const report = runRobustness({
    targets: target.addresses,
    etcd: etcd.endpoints,
    namespace: target.namespace,
    readsMayLag: target.readsMayLag,
    traffic: run.traffic,
    seconds: run.seconds,
    clients: run.clients,
    valueBytes: run.valueBytes,
    seed: run.seed,
    dumpTo: run.dumpTo,
    during:
      fault &&
      ((slowWatch) =>
        injectFault(fault, {
          ...context,
          etcd: etcd.endpoints,
          memberInUse: () => target.memberInUse!(),
          slowWatch,
          compacted,
        })),
  });
  return report.then((r) => (compactedUpTo === undefined ? r : { ...r, compactedUpTo }));
}

/**
 * What is wrong with a run, in sentences; none when it passed. etcd before
 * 3.4.25 and 3.5.8 may answer a progress request out of order with the
 * events of the stream (etcd issue 15220): behind an event it already sent,
 * or ahead of events it still owed. Every target is excused that on such an
 * etcd: the proxy confirms each answer with a second one, which narrows the
 * race but cannot close it (under back-pressure the second answer overtakes
 * owed events too; found with 70 KB values and a slow client, seed 77655992),
 * and it passes etcd's ordering on as etcd direct would. Its consistent
 * cache therefore trusts no progress answer from such an etcd; its reads are
 * held to linearizability, which nothing excuses.
 */
export function problems(report: RunReport, target: Target, etcdVersion: string): string[] {
  const [major, minor, patch] = etcdVersion.split(".").map(Number) as [number, number, number];
  const progressBehindEvents = major === 3 && ((minor === 4 && patch < 25) || (minor === 5 && patch < 8));
  // Either face of it: a progress answer behind an event already sent, or ahead of events still owed.
  // etcd reads an event's prev_kv from its store as it sends the event, and leaves it out, silently,
  // when the revision before the event is compacted by then (v3rpc/watch.go, sendLoop, 3.4 and 3.5):
  // under the compaction fault, a missing prev_kv of an event at or below a compacted revision is etcd's.
  const compactedAway = (v: { rule: string; revision: number; detail: string }) =>
    v.rule === "prev_kv" &&
    report.compactedUpTo !== undefined &&
    v.revision <= report.compactedUpTo &&
    v.detail.includes(": prev_kv undefined,");
  const excused = (v: { rule: string; revision: number; detail: string }) =>
    (progressBehindEvents && v.rule === "bookmarkable") || compactedAway(v);
  const found: string[] = [];
  if (report.linearizable !== true) {
    found.push(`not linearizable: ${JSON.stringify(report.linearizabilityFailure)}`);
  }
  for (const v of report.watchViolations.filter((v) => !excused(v)).slice(0, 10)) {
    found.push(`${v.watch} watch, ${v.rule} at ${v.revision}: ${v.detail}`);
  }
  for (const r of report.untrueReads.slice(0, 10)) found.push(`serializable read of client ${r.client}: ${r.detail}`);
  if (target.ordersReads && report.backwardReads > 0) {
    found.push(`${report.backwardReads} serializable reads went back in revision`);
  }
  // Liveness only: a frozen member the target talks to stops most of a short run.
  if (report.operations < 20) found.push(`only ${report.operations} operations`);
  if (report.watchEvents < 5) found.push(`only ${report.watchEvents} watch events`);
  return found;
}

/** One line for a report. */
export function summary(report: RunReport, name: string, fault: FaultName | undefined): string {
  return (
    `${name}, ${report.traffic} traffic, ${fault ?? "no fault"}, seed ${report.seed}: ` +
    `${report.operations} operations (${report.unanswered} unanswered), linearizable: ${report.linearizable}; ` +
    `${report.serializableReads} serializable reads (${report.staleReads} stale, ${report.backwardReads} backwards, ` +
    `${report.untrueReads.length} untrue); watch: ${report.watchEvents} events, ` +
    `${report.progressNotifications} progress notifications, ${report.watchViolations.length} violations` +
    (report.slowWatchCompacted ? "; the slow watcher was compacted" : "")
  );
}

/** A cluster the harness started, as runOn takes it. */
export function harnessEtcd(cluster: EtcdCluster): { endpoints: string[]; cluster: EtcdCluster } {
  return { endpoints: cluster.members.map((m) => m.endpoint), cluster };
}
