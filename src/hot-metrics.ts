import type { Metric, Registry } from "prom-client";

/**
 * Counters and histograms for the per-call path, shown through a prom-client
 * registry like any other metric.
 *
 * prom-client validates and hashes the label set on every inc() and
 * observe(), even through a series bound with labels(): measured, that was
 * about a tenth of the CPU of a cache hit. Here a series is bound once and a
 * call only adds to plain numbers; the registry reads them when scraped.
 */

type Labels = Readonly<Record<string, string>>;

interface Family {
  name: string;
  help: string;
  /** Series are made per label set; without labels, the one series exists (at 0) from the start. */
  labelled?: boolean;
}

/** Registers `collector` under its name; prom-client formats whatever its get() returns. */
function register(registry: Registry, collector: object): void {
  registry.registerMetric(collector as unknown as Metric);
}

export class HotCounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A counter family: `series(labels)` once per label set, then `inc()` per event. */
export class HotCounter {
  readonly type = "counter";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  private readonly all = new Map<string, HotCounterSeries>();

  constructor(registry: Registry, family: Family) {
    this.name = family.name;
    this.help = family.help;
    if (!family.labelled) this.unlabelled = this.series();
    register(registry, this);
  }

  series(labels: Labels = {}): HotCounterSeries {
    const key = JSON.stringify(labels);
    let series = this.all.get(key);
    if (!series) this.all.set(key, (series = new HotCounterSeries(labels)));
    return series;
  }

  private unlabelled: HotCounterSeries | undefined;

  /** For a family without labels: adds to its one series. */
  inc(n = 1): void {
    (this.unlabelled ??= this.series()).inc(n);
  }

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.all.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })),
    };
  }

  reset(): void {
    for (const series of this.all.values()) series.value = 0;
  }
}

export class HotHistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  /** Starts timing; the returned function observes the seconds elapsed. */
  startTimer(): () => void {
    const started = performance.now();
    return () => this.observe((performance.now() - started) / 1000);
  }
}

/** A histogram family with Prometheus' cumulative buckets (and +Inf), sum and count. */
export class HotHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  private readonly bounds: readonly number[];
  private readonly all = new Map<string, HotHistogramSeries>();

  constructor(registry: Registry, family: Family & { buckets: readonly number[] }) {
    this.name = family.name;
    this.help = family.help;
    this.bounds = [...family.buckets].sort((a, b) => a - b);
    if (!family.labelled) this.unlabelled = this.series();
    register(registry, this);
  }

  series(labels: Labels = {}): HotHistogramSeries {
    const key = JSON.stringify(labels);
    let series = this.all.get(key);
    if (!series) this.all.set(key, (series = new HotHistogramSeries(labels, this.bounds)));
    return series;
  }

  private unlabelled: HotHistogramSeries | undefined;

  /** For a family without labels: observes into its one series. */
  observe(value: number): void {
    (this.unlabelled ??= this.series()).observe(value);
  }

  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.all.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
