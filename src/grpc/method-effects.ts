import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";

/**
 * Whether a method only reads, as its descriptor says: scripts/generate.mjs
 * marks etcd's read RPCs NO_SIDE_EFFECTS (which also lets Connect serve them
 * over GET). The one list of them; the retry policy and the range cache's
 * flush rules read it from here.
 */
export function readsOnly(method: DescMethod): boolean {
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/**
 * Reads that make etcd walk its whole store. Any page can make a browser
 * send a GET (an <img> needs no permission), so these are POST only.
 */
const COSTLY_READS = new Set(["etcdserverpb.Maintenance/Hash", "etcdserverpb.Maintenance/HashKV"]);

/** Whether Connect may serve the method over HTTP GET: a read, and a cheap one. */
export function servedOverGet(method: DescMethod): boolean {
  return readsOnly(method) && !COSTLY_READS.has(`${method.parent.typeName}/${method.name}`);
}
