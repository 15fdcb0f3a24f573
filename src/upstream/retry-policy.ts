import type { DescMethod } from "@bufbuild/protobuf";
import type { MessageShape } from "@bufbuild/protobuf";
import type { TxnRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { readsOnly } from "../grpc/method-effects.js";

/**
 * Methods that change something, or may, but whose repetition has no effect
 * beyond the first call. With the read-only methods (grpc/method-effects.ts),
 * they may be retried on another endpoint even when the first attempt might
 * have been processed. Keyed by "<package.Service>/<Method>".
 */
const REPEATABLE = new Set([
  "etcdserverpb.Maintenance/Snapshot",
  "etcdserverpb.Maintenance/Defragment",
  "etcdserverpb.Auth/Authenticate",
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
  if (readsOnly(method) || REPEATABLE.has(key)) return true;
  if (key === "etcdserverpb.KV/Txn") return isReadOnlyTxn(request as TxnRequest);
  return false;
}
