import { readFileSync } from "node:fs";

const TICK_US = 1e6 / 100; // Linux USER_HZ is 100 on this kernel (getconf CLK_TCK)

/** CPU time (user + system) a process has used, in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which may contain spaces, start after ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

/** Resident set size of a process, in bytes. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) * 1024 : 0;
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * Waits until none of `pids` is busy: each used under `busyShare` of a core
 * over the last `windowMs`. A target still working through what the previous
 * scenario left it (a backlog of watch events, say) would otherwise take the
 * cores from the next one's measurement. Returns the milliseconds waited, or
 * -1 if they were still busy after `maxMs`.
 */
export async function quiet(pids: number[], windowMs = 300, busyShare = 0.05, maxMs = 30_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const before = pids.map(cpuMicros);
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const busy = pids.some((pid, i) => cpuMicros(pid) - before[i]! > busyShare * windowMs * 1000);
    const waited = performance.now() - started;
    if (!busy) return Math.max(0, waited - windowMs);
    if (waited > maxMs) return -1;
  }
}
