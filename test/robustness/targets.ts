/**
 * What a robustness run can test on a cluster the harness started: etcd
 * itself (the control: if it fails, the checker is wrong), or the proxy in
 * one of its modes, each started on a fixed port so that the proxy can be
 * restarted under its clients.
 */
import type { RunningProxy } from "../../src/main.js";
import type { EtcdCluster, EtcdMember } from "../helpers/etcd.js";
import { memberInUse } from "../helpers/fixture.js";
import { freePort } from "../helpers/ports.js";
import { startTestProxy } from "../helpers/proxy.js";

export const MODES = ["etcd", "plain", "namespace", "ordering", "leasing", "consistent"] as const;
export type Mode = (typeof MODES)[number];

/** What each mode is, for summaries. */
export const MODE_NAMES: Record<Mode, string> = {
  etcd: "etcd directly (the control)",
  plain: "the proxy, defaults (the range cache on)",
  namespace: "the proxy with --namespace",
  ordering: "the proxy with --experimental-serializable-ordering",
  leasing: "two proxies with --experimental-leasing-prefix",
  consistent: "the proxy with --consistent-cache-prefix (reads from its replica)",
};

const PROXY_ARGS: Record<Exclude<Mode, "etcd">, string[]> = {
  plain: [],
  namespace: ["--namespace=ns/"],
  ordering: ["--experimental-serializable-ordering"],
  leasing: ["--experimental-leasing-prefix=leasing/"],
  // Every run's keys live under robustness/ (runner.ts).
  consistent: ["--consistent-cache-prefix=robustness/"],
};

export interface Target {
  /** "external": an endpoint the harness did not start. */
  mode: Mode | "external";
  /** Where clients connect. */
  addresses: string[];
  /** Where the target's keys live in etcd. */
  namespace: string;
  /** Whether serializable reads must never go back in revision. */
  ordersReads: boolean;
  /** Whether linearizable reads may carry the revision a key was taken at (leasing, as etcd's). */
  readsMayLag: boolean;
  /** Absent for an external target. */
  memberInUse?: () => EtcdMember;
  restart?: () => Promise<void>;
  close(): Promise<void>;
}

export async function startTarget(mode: Mode, cluster: EtcdCluster): Promise<Target> {
  if (mode === "etcd") {
    const member = cluster.members[0]!;
    return {
      mode,
      addresses: [member.endpoint],
      namespace: "",
      ordersReads: false,
      readsMayLag: false,
      memberInUse: () => member,
      close: async () => {},
    };
  }
  const args = PROXY_ARGS[mode];
  const ports = await Promise.all((mode === "leasing" ? [0, 1] : [0]).map(() => freePort()));
  const start = (port: number) => startTestProxy(cluster.endpoints, [...args, `--listen-addr=127.0.0.1:${port}`]);
  const proxies: RunningProxy[] = await Promise.all(ports.map(start));
  return {
    mode,
    addresses: ports.map((p) => `127.0.0.1:${p}`),
    namespace: mode === "namespace" ? "ns/" : "",
    ordersReads: mode === "ordering",
    readsMayLag: mode === "leasing",
    memberInUse: () => memberInUse(proxies[0]!, cluster),
    async restart() {
      await proxies[0]!.close();
      proxies[0] = await start(ports[0]!);
    },
    async close() {
      await Promise.all(proxies.map((p) => p.close()));
    },
  };
}

/** An endpoint someone else runs: the proxy elsewhere, etcd, anything that speaks etcd's API. */
export function externalTarget(addresses: string[], readsMayLag: boolean): Target {
  return { mode: "external", addresses, namespace: "", ordersReads: false, readsMayLag, close: async () => {} };
}
