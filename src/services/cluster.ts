import { create } from "@bufbuild/protobuf";
import { Cluster, MemberListResponseSchema, MemberSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { ProxyEntry } from "../registry/proxy-directory.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll } from "./forward.js";
import type { ServiceHandlers } from "./handlers.js";

export interface ClusterOptions {
  /** --advertise-client-url; empty means MemberList goes to etcd. */
  advertiseClientUrl: string;
  /** The name this proxy reports for itself (etcd uses the hostname). */
  name: string;
  /** The proxies registered under --resolver-prefix, when registration is on. */
  registered?: () => ProxyEntry[];
}

/**
 * Cluster RPCs go to etcd, except MemberList: as in etcd's proxy, clients that
 * sync their endpoints through MemberList must learn the proxy's address, not
 * the members' (spec §6.3). Like etcd's, the answer has no header and ID 0.
 */
export function clusterService(upstream: Upstream, options: ClusterOptions): ServiceHandlers<typeof Cluster> {
  const forwarded = forwardAll(Cluster, upstream);
  if (options.advertiseClientUrl === "") return forwarded;
  return {
    ...forwarded,
    // The registered proxies, or this one while none is known yet.
    memberList: async () => {
      const registered = options.registered?.() ?? [];
      const members = registered.length > 0 ? registered : [{ name: options.name, addr: options.advertiseClientUrl }];
      return create(MemberListResponseSchema, {
        members: members.map((m) => create(MemberSchema, { name: m.name, clientURLs: [m.addr] })),
      });
    },
  };
}
