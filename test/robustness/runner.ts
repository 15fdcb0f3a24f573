/**
 * One robustness run: traffic against a target (the proxy, or etcd itself
 * as the control), a watch through the target over the traffic's keys, then
 * the truth read from etcd directly, and every history checked: the KV
 * operations for linearizability, the watch against etcd's watch rules.
 *
 * The model counts every revision, so the cluster must have no other
 * writers while the run lasts.
 */
import { checkLinearizable, type Verdict } from "./linearizability.js";
import { emptyStore, storeModel } from "./etcd-model.js";
import { recordWatch, runTraffic, type Recorded, type RecordedWatch } from "./traffic.js";
import { validateWatch, type TrueHistory, type WatchViolation, type WatchedEvent } from "./watch-validation.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";

export interface RunOptions {
  /** host:port of what is tested. */
  target: string;
  /** host:port of an etcd member, for the truth. */
  etcd: string;
  traffic: "etcd" | "kubernetes";
  seconds: number;
  clients?: number;
  seed?: number;
  /** Runs while the traffic flows (faults); the traffic waits for it. */
  during?: (signal: AbortSignal) => Promise<void>;
}

export interface RunReport {
  target: string;
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
  watchViolations: WatchViolation[];
}

/** How long the watches get to catch up with the last revision once the traffic stops. */
const CATCH_UP_MS = 10_000;

export async function runRobustness(options: RunOptions): Promise<RunReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const prefix = `robustness/${seed}-${Date.now()}/`;
  const direct = new EtcdGrpcClient(options.etcd);
  try {
    const start = await currentRevision(direct);
    const watch = recordWatch(options.target, prefix, start + 1, options.traffic === "kubernetes" ? 100 : undefined);
    const faults = new AbortController();
    const [history] = await Promise.all([
      runTraffic({
        target: options.target,
        prefix,
        clients: options.clients ?? 8,
        durationMs: options.seconds * 1000,
        leaseBase: (seed % 1_000_000) * 1000 + 1,
        seed,
      }).finally(() => faults.abort()),
      options.during?.(faults.signal),
    ]);
    const end = await currentRevision(direct);
    const truthWatch = recordWatch(options.etcd, prefix, start + 1);
    await Promise.all([caughtUp(watch, end), caughtUp(truthWatch, end)]);
    await Promise.all([watch.stop(), truthWatch.stop()]);
    const truth = trueHistory(truthWatch.responses);

    const verdict = checkLinearizable(storeModel(emptyStore(start)), history, 120_000);
    const watchViolations = validateWatch(
      { key: "", end: "\u{10ffff}", startRevision: start + 1, prevKv: true },
      watch.responses,
      truth,
    );
    return {
      target: options.target,
      traffic: options.traffic,
      seed,
      operations: history.length,
      unanswered: history.filter((op) => op.output === undefined).length,
      watchEvents: watch.responses.reduce((n, r) => n + (r.kind === "events" ? r.events.length : 0), 0),
      progressNotifications: watch.responses.filter((r) => r.kind === "progress").length,
      linearizable: verdict.linearizable,
      ...(verdict.linearizable === true ? {} : { linearizabilityFailure: failure(verdict, history) }),
      watchViolations,
    };
  } finally {
    direct.close();
  }
}

async function currentRevision(etcd: EtcdGrpcClient): Promise<number> {
  const r = await etcd.unary("KV", "Range", { key: Buffer.from("robustness/"), count_only: true });
  return Number((r.header as { revision: string }).revision);
}

/**
 * Waits until a watch has delivered the traffic's last revision (the run's
 * writes are the cluster's only ones, so that revision is the traffic's).
 * Events alone count: before 3.4.25 and 3.5.8 etcd's progress answers could
 * overtake events it still owed. A watch that lost the events waits out the
 * bound, and the validation says what is missing.
 */
async function caughtUp(watch: RecordedWatch, revision: number): Promise<void> {
  const until = performance.now() + CATCH_UP_MS;
  const reached = () =>
    watch.responses.some((r) => r.kind === "events" && r.events.some((e) => e.modRevision >= revision));
  while (!reached() && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
}

function trueHistory(responses: RecordedWatch["responses"]): TrueHistory {
  const truth = new Map<number, Array<WatchedEvent & { prevValue: string | undefined }>>();
  for (const r of responses) {
    if (r.kind !== "events") continue;
    for (const e of r.events) {
      const at = truth.get(e.modRevision) ?? [];
      at.push({ ...e, prevValue: e.prevValue });
      truth.set(e.modRevision, at);
    }
  }
  return truth;
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
