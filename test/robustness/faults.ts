/**
 * The faults a robustness run injects while its traffic flows, after
 * etcd's: a member killed and restarted (the one in use, or the leader), a
 * member frozen, leadership moved, compactions while a watcher is behind, the
 * proxy restarted, and a client that stops reading. Each waits a moment
 * into the run, does its harm once, and undoes it before it resolves.
 */
import type { EtcdCluster, EtcdMember } from "../helpers/etcd.js";
import { leaderMember } from "../helpers/fixture.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import type { RecordedWatch } from "./watch-recorder.js";

export const FAULT_NAMES = [
  "kill-in-use",
  "kill-leader",
  "freeze",
  "leader-move",
  "compaction",
  "restart-proxy",
  "slow-client",
] as const;
export type FaultName = (typeof FAULT_NAMES)[number];

export interface FaultContext {
  /** The cluster's processes, when the harness started it; only compaction and slow-client do without. */
  cluster?: EtcdCluster;
  /** host:port of etcd's members. */
  etcd: string[];
  /** The member the target sends its calls to; for etcd as the target, that member. */
  memberInUse: () => EtcdMember;
  /** Restarts what is tested on its address; absent when the target is not a proxy this run started. */
  restartTarget?: () => Promise<void>;
  /** A watcher over the traffic's keys that the faults may make slow. */
  slowWatch: RecordedWatch;
  /** Hears each revision the compaction fault compacted etcd to. */
  compacted?: (revision: number) => void;
}

/** When a fault strikes, into the run. */
const STRIKE_AFTER_MS = 1000;
const OUTAGE_MS = 1500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the fault can be injected with what the context has. */
export function faultApplies(name: FaultName, context: Pick<FaultContext, "restartTarget" | "cluster">): boolean {
  if (name === "compaction" || name === "slow-client") return true;
  if (name === "restart-proxy") return context.restartTarget !== undefined;
  return context.cluster !== undefined;
}

export async function injectFault(name: FaultName, context: FaultContext): Promise<void> {
  await sleep(STRIKE_AFTER_MS);
  switch (name) {
    case "kill-in-use":
      return killAndRestart(context.cluster!, context.memberInUse());
    case "kill-leader":
      return killAndRestart(context.cluster!, await leaderMember(context.cluster!));
    case "freeze": {
      const pid = context.memberInUse().process!.pid!;
      process.kill(pid, "SIGSTOP");
      try {
        await sleep(OUTAGE_MS * 2);
      } finally {
        process.kill(pid, "SIGCONT");
      }
      return;
    }
    case "leader-move":
      return moveLeader(context.cluster!);
    case "compaction":
      return compactBehind(context);
    case "restart-proxy":
      return context.restartTarget!();
    case "slow-client":
      context.slowWatch.pause();
      await sleep(OUTAGE_MS * 2);
      context.slowWatch.resume();
      return;
  }
}

async function killAndRestart(cluster: EtcdCluster, member: EtcdMember): Promise<void> {
  await cluster.kill(member);
  await sleep(OUTAGE_MS);
  await cluster.restart(member);
}

async function moveLeader(cluster: EtcdCluster): Promise<void> {
  const leader = await leaderMember(cluster);
  const other = cluster.members.find((m) => m !== leader)!;
  const via = new EtcdGrpcClient(leader.endpoint);
  const probe = new EtcdGrpcClient(other.endpoint);
  try {
    const status = (await probe.unary("Maintenance", "Status", {})) as { header: { member_id: string } };
    await via.unary("Maintenance", "MoveLeader", { targetID: status.header.member_id });
  } finally {
    via.close();
    probe.close();
  }
}

/**
 * The slow watcher drops its stream, etcd is compacted a few times while the
 * traffic goes on, and the watcher comes back from where it was: it must be
 * told its revision was compacted, not be served from anyone's memory.
 */
async function compactBehind(context: FaultContext): Promise<void> {
  await context.slowWatch.disconnect();
  const etcd = new EtcdGrpcClient(context.etcd[0]!);
  try {
    for (let i = 0; i < 3; i++) {
      await sleep(OUTAGE_MS / 2);
      const r = await etcd.unary("KV", "Range", { key: Buffer.from("compaction"), count_only: true });
      const revision = (r.header as { revision: string }).revision;
      await etcd.unary("KV", "Compact", { revision }).catch(() => undefined); // compacted already
      context.compacted?.(Number(revision));
    }
  } finally {
    etcd.close();
    context.slowWatch.reconnect();
  }
}
