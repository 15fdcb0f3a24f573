/**
 * One robustness run: traffic against a target (the proxy, or etcd itself
 * as the control), two watches through the target over the traffic's keys
 * (one that keeps up, asking for progress when the traffic is
 * Kubernetes-like, and one that faults may make slow), maybe a fault, then
 * every history checked against the truth, which a watch straight to etcd
 * records from before the traffic starts: the KV operations for
 * linearizability, the serializable reads against the revision they claim,
 * both watches against etcd's watch rules.
 *
 * Writers outside the traffic's keys are allowed (a leasing proxy writes its
 * own): the truth watch sees their revisions and the model skips them.
 */
import { writeFileSync } from "node:fs";
import { checkLinearizable, type Verdict } from "./linearizability.js";
import { emptyStore, storeModel } from "./etcd-model.js";
import { settleUnanswered } from "./history-patch.js";
import { checkSerializableReads, type SerializableRead } from "./serializable-reads.js";
import { runTraffic, type Recorded } from "./traffic.js";
import { recordWatch, type RecordedWatch } from "./watch-recorder.js";
import { trueHistory, validateWatch, type WatchViolation } from "./watch-validation.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";

export interface RunOptions {
  /** host:port of what is tested; clients spread over them, the watches use the first. */
  targets: string[];
  /** host:port of etcd's members, for the truth. */
  etcd: string[];
  /** The target's keys live in etcd under this prefix (--namespace). */
  namespace?: string;
  traffic: "etcd" | "kubernetes";
  seconds: number;
  clients?: number;
  /** Values padded to this length (see TrafficOptions). */
  valueBytes?: number;
  seed?: number;
  /**
   * Linearizable reads may carry an older revision than their answer's
   * moment, as etcd's leasing protocol answers: their keys are checked for
   * linearizability, their revision against the truth.
   */
  readsMayLag?: boolean;
  /** Some reads are serializable (default: yes). */
  serializableReads?: boolean;
  /** Writes the run's operations, serializable reads and truth there as JSON, for a closer look. */
  dumpTo?: string;
  /** Runs while the traffic flows, given the slow watcher; the checks wait for it. */
  during?: (slowWatch: RecordedWatch) => Promise<void>;
}

export interface RunReport {
  targets: string[];
  traffic: string;
  seed: number;
  operations: number;
  /** Operations whose answer never came. */
  unanswered: number;
  watchEvents: number;
  progressNotifications: number;
  linearizable: boolean | "unknown";
  /** Where the checker came no further, when it did not pass. */
  linearizabilityFailure?: { longestPrefix: number; stuck: Array<{ input: unknown; output: unknown }> } | string;
  watchViolations: Array<WatchViolation & { watch: "live" | "slow" }>;
  serializableReads: number;
  /** Serializable reads whose keys were not the store's at their revision. */
  untrueReads: Array<{ client: number; revision: number; detail: string }>;
  /** Serializable reads behind a write acknowledged before they were sent (allowed). */
  staleReads: number;
  /** Serializable reads behind a Range answer seen before they were sent (allowed unless ordering is on). */
  backwardReads: number;
  /** Whether the slow watcher was ended by a compaction (allowed, when it was behind it). */
  slowWatchCompacted: boolean;
  /** The highest revision the compaction fault compacted etcd to, if it ran. */
  compactedUpTo?: number;
}

/** How long the watches get to catch up with the last revision once the traffic stops. */
const CATCH_UP_MS = 10_000;

export async function runRobustness(options: RunOptions): Promise<RunReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const prefix = `robustness/${seed}-${Date.now()}/`;
  const stored = (options.namespace ?? "") + prefix;
  const direct = new EtcdGrpcClient(options.etcd[0]!);
  const watches: RecordedWatch[] = [];
  try {
    const start = await currentRevision(direct);
    const truthWatch = recordWatch(options.etcd, { prefix: "", everything: true, startRevision: start + 1 });
    const progressEveryMs = options.traffic === "kubernetes" ? 100 : undefined;
    const live = recordWatch(options.targets, { prefix, startRevision: start + 1, progressEveryMs });
    const slow = recordWatch(options.targets, { prefix, startRevision: start + 1 });
    watches.push(truthWatch, live, slow);
    const [history] = await Promise.all([
      runTraffic({
        targets: options.targets,
        prefix,
        clients: options.clients ?? 8,
        durationMs: options.seconds * 1000,
        leaseBase: (seed % 1_000_000) * 1000 + 1,
        seed,
        serializableReads: options.serializableReads ?? true,
        valueBytes: options.valueBytes,
      }),
      options.during?.(slow),
    ]);
    const end = await currentRevision(direct);
    await caughtUp(truthWatch, end);
    const { truth, foreign } = trueHistory(truthWatch.responses, stored);
    const lastOwn = Math.max(start, ...truth.keys());
    await Promise.all([caughtUp(live, lastOwn), caughtUp(slow, lastOwn)]);
    await Promise.all(watches.map((w) => w.stop()));

    const operations = settleUnanswered(history.operations, truth);
    if (options.dumpTo) {
      const dump = {
        start,
        end,
        foreign: [...foreign],
        operations,
        reads: history.serializableReads,
        truth: [...truth],
      };
      writeFileSync(
        options.dumpTo,
        JSON.stringify(dump, (_, v: unknown) => (v === Infinity ? "Infinity" : v)),
      );
    }
    const readsMayLag = options.readsMayLag ?? false;
    const model = storeModel(emptyStore(start), foreign, { readsMayLag });
    const verdict = checkLinearizable(model, operations, 120_000);
    const request = { key: "", end: "\u{10ffff}", startRevision: start + 1, prevKv: true };
    const reads = checkSerializableReads(history.serializableReads, truth, history.operations, end);
    const lagging = readsMayLag ? checkSerializableReads(rangeAnswers(operations), truth, [], end) : undefined;
    return {
      targets: options.targets,
      traffic: options.traffic,
      seed,
      operations: history.operations.length,
      unanswered: history.operations.filter((op) => op.output === undefined).length,
      watchEvents: live.responses.reduce((n, r) => n + (r.kind === "events" ? r.events.length : 0), 0),
      progressNotifications: live.responses.filter((r) => r.kind === "progress").length,
      linearizable: verdict.linearizable,
      ...(verdict.linearizable === true ? {} : { linearizabilityFailure: failure(verdict, operations) }),
      watchViolations: [
        ...validateWatch(request, live.responses, truth).map((v) => ({ ...v, watch: "live" as const })),
        ...validateWatch(request, slow.responses, truth).map((v) => ({ ...v, watch: "slow" as const })),
      ],
      serializableReads: history.serializableReads.length,
      untrueReads: [...reads.untrue, ...(lagging?.untrue ?? [])],
      staleReads: reads.stale,
      backwardReads: reads.backwards,
      slowWatchCompacted: slow.compacted(),
    };
  } finally {
    await Promise.all(watches.map((w) => w.stop()));
    direct.close();
  }
}

async function currentRevision(etcd: EtcdGrpcClient): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await etcd.unary("KV", "Range", { key: Buffer.from("robustness/"), count_only: true });
      return Number((r.header as { revision: string }).revision);
    } catch (err) {
      if (attempt === 50) throw err; // the member may still be coming back from a fault
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * Waits until a watch has delivered an event at `revision` or past it.
 * Events alone count: before 3.4.25 and 3.5.8 etcd's progress answers could
 * overtake events it still owed. A watch that lost the events waits out the
 * bound, and the validation says what is missing.
 */
async function caughtUp(watch: RecordedWatch, revision: number): Promise<void> {
  const until = performance.now() + CATCH_UP_MS;
  while (watch.lastEventRevision() < revision && !watch.compacted() && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The linearizable reads' answers, to check the revision each claims. */
function rangeAnswers(operations: readonly Recorded[]): SerializableRead[] {
  return operations.flatMap((op) =>
    op.input.type === "range" && op.output?.type === "range"
      ? [{ client: op.client, key: op.input.key, end: op.input.end, call: op.call, return: op.return, ...op.output }]
      : [],
  );
}

function failure(
  verdict: Exclude<Verdict, { linearizable: true }>,
  history: Recorded[],
): RunReport["linearizabilityFailure"] {
  if (verdict.linearizable === "unknown") return verdict.reason;
  return {
    longestPrefix: verdict.longest.length,
    stuck: verdict.stuck.slice(0, 5).map((i) => ({ input: history[i]!.input, output: history[i]!.output })),
  };
}
