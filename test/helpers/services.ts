import type { DescService } from "@bufbuild/protobuf";
import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Election } from "../../src/gen/etcd/api/v3electionpb/v3election_pb.js";
import { Lock } from "../../src/gen/etcd/api/v3lockpb/v3lock_pb.js";
import { LeaseService, ProxyService, WatchService } from "../../src/gen/etcdproxy/v1/proxy_pb.js";

/** Every service the proxy serves: etcd's, its recipes', and the proxy's own. */
export const SERVICES: readonly DescService[] = [
  KV,
  Watch,
  Lease,
  Cluster,
  Maintenance,
  Auth,
  Election,
  Lock,
  WatchService,
  LeaseService,
  ProxyService,
];
