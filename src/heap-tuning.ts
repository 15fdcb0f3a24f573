/**
 * The proxy process's garbage-collector setting. V8 counts the memory of
 * each answer from etcd (a fresh buffer, outside the JS heap) toward the
 * next full collection, and by default lets the old generation grow to
 * about 1.8 times what survived the last one. With ~20 MB of long-lived
 * heap, a megabyte-sized answer stream then pays a full mark-compact every
 * 16 answers, which measured as half the process's CPU. Growing the heap
 * fourfold before the next one (V8's --heap-growing-percent=300) cuts
 * those collections by four to five, for more resident memory under load.
 * An operator who names the flag to node keeps their own value.
 */
import { setFlagsFromString } from "node:v8";

const FLAG = "--heap-growing-percent";
export const HEAP_GROWING_PERCENT = 300;

export function tuneHeapForForwarding(
  nodeFlags: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? "",
): boolean {
  const named = [...nodeFlags, ...nodeOptions.split(/\s+/)].some((flag) => flag.replaceAll("_", "-").startsWith(FLAG));
  if (named) return false;
  // Read by V8 at each full collection, so setting it after start takes effect.
  setFlagsFromString(`${FLAG}=${HEAP_GROWING_PERCENT}`);
  return true;
}
