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

/**
 * A family of series, one per label set, made once and then only added to.
 * Without labels, the one series exists (at 0) from the start.
 */
abstract class HotFamily<S extends { readonly labels: Labels }> {
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  private readonly all = new Map<string, S>();
  protected readonly unlabelled: S | undefined;

  constructor(
    registry: Registry,
    family: Family,
    private readonly make: (labels: Labels) => S,
  ) {
    this.name = family.name;
    this.help = family.help;
    if (!family.labelled) this.unlabelled = this.series();
    register(registry, this);
  }

  series(labels: Labels = {}): S {
    const key = JSON.stringify(labels);
    let series = this.all.get(key);
    if (!series) this.all.set(key, (series = this.make(labels)));
    return series;
  }

  protected get everySeries(): IterableIterator<S> {
    return this.all.values();
  }
}

export class HotCounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A counter family: `series(labels)` once per label set, then `inc()` per event. */
export class HotCounter extends HotFamily<HotCounterSeries> {
  readonly type = "counter";

  constructor(registry: Registry, family: Family) {
    super(registry, family, (labels) => new HotCounterSeries(labels));
  }

  /** For a family without labels: adds to its one series. */
  inc(n = 1): void {
    this.unlabelled!.inc(n);
  }

  async get() {
    const values = [...this.everySeries].map((s) => ({ labels: { ...s.labels }, value: s.value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const series of this.everySeries) series.value = 0;
  }
}

export class HotHistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    readonly bounds: readonly number[],
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
}

/** A histogram family with Prometheus' cumulative buckets (and +Inf), sum and count. */
export class HotHistogram extends HotFamily<HotHistogramSeries> {
  readonly type = "histogram";

  constructor(registry: Registry, family: Family & { buckets: readonly number[] }) {
    const bounds = [...family.buckets].sort((a, b) => a - b);
    super(registry, family, (labels) => new HotHistogramSeries(labels, bounds));
  }

  /** For a family without labels: observes into its one series. */
  observe(value: number): void {
    this.unlabelled!.observe(value);
  }

  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.everySeries) {
      let cumulative = 0;
      s.bounds.forEach((le, i) => {
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
    for (const s of this.everySeries) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
