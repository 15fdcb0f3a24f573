// The proxy's /proxy/metrics (Prometheus text), read into samples, and the
// figures the Proxy page charts from two readings: rates from counters,
// latency quantiles from histogram buckets. Pure functions.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One reading of the metrics page, at a time in seconds. */
export interface Reading {
  at: number;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** The samples of a Prometheus text page; comments and lines it cannot read are skipped. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const value = Number(m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(LABEL))
      labels[k!] = v!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

/** The sum of a metric's samples, grouped by what `group` makes of their labels (undefined: left out). */
export function sumBy(samples: Sample[], name: string, group: (labels: Record<string, string>) => string | undefined) {
  const sums = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = group(s.labels);
    if (key !== undefined) sums.set(key, (sums.get(key) ?? 0) + s.value);
  }
  return sums;
}

/** A gRPC method as the charts name it: "KV/Range". */
export const methodOf = (labels: Record<string, string>): string | undefined =>
  labels["grpc_method"] ? `${(labels["grpc_service"] ?? "").split(".").pop()}/${labels["grpc_method"]}` : undefined;

/** Per-second increase of each group of a counter between two readings (a reset counts from zero). */
export function ratesBetween(
  before: Reading,
  after: Reading,
  name: string,
  group: (labels: Record<string, string>) => string | undefined,
): Map<string, number> {
  const seconds = after.at - before.at;
  const was = sumBy(before.samples, name, group);
  const rates = new Map<string, number>();
  if (seconds <= 0) return rates;
  for (const [key, now] of sumBy(after.samples, name, group)) {
    const then = was.get(key) ?? 0;
    rates.set(key, (now >= then ? now - then : now) / seconds);
  }
  return rates;
}

/**
 * The q-quantile (0..1) of each group of a histogram over the interval
 * between two readings, in the histogram's unit, interpolated within the
 * bucket as Prometheus' histogram_quantile does. Groups with no
 * observations in the interval are left out.
 */
export function quantilesBetween(
  before: Reading,
  after: Reading,
  histogram: string,
  q: number,
  group: (labels: Record<string, string>) => string | undefined,
): Map<string, number> {
  const bucketsOf = (r: Reading) => {
    const byGroup = new Map<string, Map<number, number>>();
    for (const s of r.samples) {
      if (s.name !== `${histogram}_bucket`) continue;
      const key = group(s.labels);
      const le = Number(s.labels["le"] === "+Inf" ? Infinity : s.labels["le"]);
      if (key === undefined || Number.isNaN(le)) continue;
      const buckets = byGroup.get(key) ?? new Map<number, number>();
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      byGroup.set(key, buckets);
    }
    return byGroup;
  };
  const was = bucketsOf(before);
  const out = new Map<string, number>();
  for (const [key, buckets] of bucketsOf(after)) {
    const earlier = was.get(key);
    const counts = [...buckets]
      .map(([le, n]) => [le, n - (earlier?.get(le) ?? 0)] as const)
      .sort((a, b) => a[0] - b[0]);
    const total = counts.at(-1)?.[1] ?? 0;
    if (total <= 0) continue;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, cumulative] of counts) {
      if (cumulative >= rank) {
        // The last finite bound stands for the +Inf bucket.
        if (le === Infinity) out.set(key, lower);
        else out.set(key, lower + ((le - lower) * (rank - below)) / Math.max(1e-12, cumulative - below));
        break;
      }
      lower = le;
      below = cumulative;
    }
  }
  return out;
}
