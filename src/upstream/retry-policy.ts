import type { DescMethod } from "@bufbuild/protobuf";
import type { MessageShape } from "@bufbuild/protobuf";
import type { TxnRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";

/**
 * Methods whose repetition has no effect beyond the first call, so they may
 * be retried on another endpoint even when the first attempt might have been
 * processed. Keyed by "<package.Service>/<Method>".
 */
const SAFE_TO_REPEAT = new Set([
  "etcdserverpb.KV/Range",
  "etcdserverpb.Lease/LeaseTimeToLive",
  "etcdserverpb.Lease/LeaseLeases",
  "etcdserverpb.Cluster/MemberList",
  "etcdserverpb.Maintenance/Status",
  "etcdserverpb.Maintenance/Hash",
  "etcdserverpb.Maintenance/HashKV",
  "etcdserverpb.Maintenance/Snapshot",
  "etcdserverpb.Maintenance/Defragment",
  "etcdserverpb.Auth/AuthStatus",
  "etcdserverpb.Auth/Authenticate",
  "etcdserverpb.Auth/UserGet",
  "etcdserverpb.Auth/UserList",
  "etcdserverpb.Auth/RoleGet",
  "etcdserverpb.Auth/RoleList",
  "v3electionpb.Election/Leader",
  "v3electionpb.Election/Observe",
]);

function methodKey(method: DescMethod): string {
  return `${method.parent.typeName}/${method.name}`;
}

type TxnRequest = MessageShape<typeof TxnRequestSchema>;

/** A Txn that only reads (recursively) is as safe to repeat as a Range. */
function isReadOnlyTxn(txn: TxnRequest): boolean {
  return [...txn.success, ...txn.failure].every((op) => {
    switch (op.request.case) {
      case "requestRange":
        return true;
      case "requestTxn":
        return isReadOnlyTxn(op.request.value);
      default:
        return false;
    }
  });
}

/** Whether isSafeToRepeat needs the decoded request for this method. */
export function safetyDependsOnRequest(method: DescMethod): boolean {
  return methodKey(method) === "etcdserverpb.KV/Txn";
}

/** May this call be sent again after an attempt whose outcome is unknown? */
export function isSafeToRepeat(method: DescMethod, request: unknown): boolean {
  const key = methodKey(method);
  if (SAFE_TO_REPEAT.has(key)) return true;
  if (key === "etcdserverpb.KV/Txn") return isReadOnlyTxn(request as TxnRequest);
  return false;
}
