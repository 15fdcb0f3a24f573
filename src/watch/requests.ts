import { create } from "@bufbuild/protobuf";
import { WatchRequestSchema, type WatchRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";

/** A create request for the proxy's own watches (cache invalidation, registrations). */
export function createWatchRequest(key: Uint8Array, rangeEnd: Uint8Array, startRevision = 0n): WatchRequest {
  return create(WatchRequestSchema, {
    requestUnion: { case: "createRequest", value: { key, rangeEnd, startRevision } },
  });
}
