/**
 * A signal that aborts with `parent`, and can be let go of: long-lived
 * parents (a shutdown signal) would otherwise collect one listener per
 * short-lived use.
 */
export function childSignal(parent: AbortSignal): { signal: AbortSignal; release(): void } {
  const child = new AbortController();
  const onAbort = () => child.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  return {
    signal: child.signal,
    release: () => {
      parent.removeEventListener("abort", onAbort);
      child.abort();
    },
  };
}
