import { after, before } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { startEtcd, type EtcdCluster, type EtcdMember } from "./etcd.js";
import { EtcdGrpcClient, UNLIMITED } from "./grpc-client.js";
import { startTestProxy } from "./proxy.js";

/** A real etcd cluster, the proxy in front of it, and gRPC clients for both. */
export interface ProxyFixture {
  etcd: EtcdCluster;
  proxy: RunningProxy;
  /** grpc-js client through the proxy. */
  client: EtcdGrpcClient;
  /** grpc-js client straight to etcd (its first member), for comparisons. */
  direct: EtcdGrpcClient;
}

export interface FixtureOptions {
  proxyArgs?: string[];
  /** More etcd flags for every member. */
  etcdArgs?: string[];
  /**
   * More preparation, run inside the same hook: node 20 does not wait for one
   * root-level before() to finish before starting the next.
   */
  setup?: (f: ProxyFixture) => Promise<void> | void;
}

/**
 * Registers before/after hooks in the current suite that start and stop an
 * etcd cluster of `size` members with the proxy in front; the returned object
 * is filled in once the hooks have run.
 */
export function useProxy(size = 1, { proxyArgs = [], etcdArgs = [], setup }: FixtureOptions = {}): ProxyFixture {
  const f = {} as ProxyFixture;
  before(async () => {
    f.etcd = await startEtcd(size, undefined, etcdArgs);
    f.proxy = await startTestProxy(f.etcd.endpoints, proxyArgs);
    f.client = new EtcdGrpcClient(f.proxy.address, undefined, UNLIMITED);
    f.direct = new EtcdGrpcClient(f.etcd.members[0]!.endpoint, undefined, UNLIMITED);
    await setup?.(f);
  });
  after(async () => {
    f.client?.close();
    f.direct?.close();
    await f.proxy?.close();
    await f.etcd?.stop();
  });
  return f;
}

/** The etcd member the proxy currently sends calls to. */
export function memberInUse(proxy: RunningProxy, etcd: EtcdCluster): EtcdMember {
  const current = proxy.upstream.endpoints().find((e) => e.current)!;
  return etcd.members.find((m) => m.clientUrl === current.url)!;
}

/**
 * The member that leads the cluster now, by each member's own Status. In an
 * election (a leader moved or lost) no member leads for a moment: it asks
 * again until one does, for up to `timeoutMs`.
 */
export async function leaderMember(etcd: EtcdCluster, timeoutMs = 5_000): Promise<EtcdMember> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const statuses = await Promise.all(
      etcd.members
        .filter((m) => m.process)
        .map(async (member) => {
          const probe = new EtcdGrpcClient(member.endpoint);
          try {
            const status = (await probe.unary("Maintenance", "Status", {})) as {
              leader: string;
              header: { member_id: string };
            };
            return { member, leads: status.leader === status.header.member_id };
          } catch {
            return { member, leads: false }; // a member that does not answer does not lead
          } finally {
            probe.close();
          }
        }),
    );
    const leader = statuses.find((s) => s.leads);
    if (leader) return leader.member;
    if (Date.now() > until) throw new Error("no member leads the cluster");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Kills every member but the last and waits until that survivor knows it
 * has no leader (its Status reports leader 0). Returns the survivor.
 */
export async function loseQuorum(etcd: EtcdCluster, timeoutMs = 10_000): Promise<EtcdMember> {
  const survivor = etcd.members[etcd.members.length - 1]!;
  for (const m of etcd.members) if (m !== survivor) await etcd.kill(m);
  const probe = new EtcdGrpcClient(survivor.endpoint);
  try {
    const until = Date.now() + timeoutMs;
    while (((await probe.unary("Maintenance", "Status", {})) as { leader: string }).leader !== "0") {
      if (Date.now() > until) throw new Error("the survivor never lost its leader");
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.close();
  }
  return survivor;
}
