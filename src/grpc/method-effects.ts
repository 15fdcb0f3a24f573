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
