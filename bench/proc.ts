import { readFileSync } from "node:fs";

/**
 * glibc settings for the load generator's own process. Every answer a client
 * reads lands in fresh memory that glibc returns to the kernel when it is
 * freed, so each megabyte page-faults again: without these, the clients spent
 * 1.8–3 ms of CPU per 1 MB answer, with them about 0.5 ms, which leaves the
 * cores to the servers being measured. Proxies started by the bench do not
 * inherit them (BENCH_PROXY_ENV gives them settings of their own).
 */
export const LOAD_GENERATOR_MALLOC: Record<string, string> = {
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(256 << 20),
};

/** The environment for a proxy under test: the bench's, without the load generator's tuning, plus BENCH_PROXY_ENV. */
export function proxyEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(LOAD_GENERATOR_MALLOC)) delete env[name];
  for (const pair of (process.env.BENCH_PROXY_ENV ?? "").split(" ").filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}

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
