import { Cluster } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { ProxyEntry } from "../registry/proxy-directory.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll } from "./forward.js";
import type { ServiceHandlers } from "./handlers.js";

export interface ClusterOptions {
  /** --advertise-client-url; empty means MemberList goes to etcd unchanged. */
  advertiseClientUrl: string;
  /** The scheme of this proxy's client URLs: https when it serves TLS. */
  scheme: "http" | "https";
  /** The proxies registered under --resolver-prefix, when registration is on. */
  registered?: () => ProxyEntry[];
}

/**
 * Cluster RPCs go to etcd. MemberList does too, and keeps etcd's answer
 * (header, member IDs, names, peer URLs, learner flags), so tools that
 * cross-check IDs (Status's leader, alarms, member remove) still work; but
 * its client URLs become the proxies', so clients that sync their endpoints
 * through MemberList stay on the proxies. etcd's Go proxy
 * instead answers one made-up member, itself, with ID 0.
 *
 * Each proxy URL (this proxy's, or every one registered under
 * --resolver-prefix) appears once in the whole list, spread over the
 * members a client syncs from (started, not learners: clientv3's Sync
 * skips the others), so Sync yields each proxy once.
 */
export function clusterService(upstream: Upstream, options: ClusterOptions): ServiceHandlers<typeof Cluster> {
  const forwarded = forwardAll(Cluster, upstream);
  if (options.advertiseClientUrl === "") return forwarded;
  return {
    ...forwarded,
    memberList: async (request, ctx) => {
      const answer = await upstream.unary(Cluster.method.memberList, request, ctx);
      const registered = options.registered?.() ?? [];
      const addresses = registered.length > 0 ? registered.map((p) => p.addr) : [options.advertiseClientUrl];
      const urls = [...new Set(addresses.map((a) => withScheme(a, options.scheme)))].sort();
      const syncable = answer.members.filter((m) => m.name !== "" && !m.isLearner);
      const carriers = syncable.length > 0 ? syncable : answer.members.slice(0, 1);
      for (const m of answer.members) m.clientURLs = [];
      urls.forEach((url, i) => carriers[i % carriers.length]?.clientURLs.push(url));
      return answer;
    },
  };
}

/** A client URL with its scheme: registration records and --advertise-client-url may give a bare host:port. */
function withScheme(address: string, scheme: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `${scheme}://${address}`;
}
