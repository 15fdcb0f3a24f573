// The Proxy page's charts (uPlot): readings of /proxy/metrics over time,
// each chart with a title, a time axis, a value axis with its unit, a
// legend, and a line that says the latest values in words.
import uPlot from "uplot";
import { debounce } from "./ui.js";
import { methodOf, quantilesBetween, ratesBetween, sumBy, type Reading } from "./prometheus.js";

/** One line of a chart at one reading (undefined: no value then). */
type Point = Record<string, number | undefined>;

interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  /** The chart's values at a reading, from it and the one before. */
  values(before: Reading | undefined, now: Reading): Point;
  /** Endpoint health and the like: steps, not slopes. */
  stepped?: boolean;
}

/** Methods shown by name; the rest are summed as "other". */
const TOP_METHODS = 6;
const PALETTE = ["#4f8ff7", "#e0782f", "#2f9e5a", "#c2418f", "#8a63d2", "#c9a227", "#3aa6b9", "#8c8c8c"];

const gauge = (now: Reading, name: string) => sumBy(now.samples, name, () => "").get("") ?? 0;
const label = (labels: Record<string, string>, key: string) => labels[key];

export const CHARTS: ChartSpec[] = [
  {
    id: "chart-requests",
    title: "Requests per second, by method",
    unit: "req/s",
    values: (before, now) => (before ? topOf(ratesBetween(before, now, "grpc_server_handled_total", methodOf)) : {}),
  },
  {
    id: "chart-latency",
    title: "Latency, 99th percentile, by method",
    unit: "ms",
    values: (before, now) => {
      if (!before) return {};
      const p99 = quantilesBetween(before, now, "grpc_server_handling_seconds", 0.99, methodOf);
      return Object.fromEntries([...p99].map(([m, s]) => [m, s * 1000]));
    },
  },
  {
    id: "chart-watch",
    title: "Watch coalescing: client watchers on upstream watchers",
    unit: "watchers",
    values: (_before, now) => ({
      "client watchers": gauge(now, "etcd_grpc_proxy_watch_client_watchers"),
      "upstream watchers": gauge(now, "etcd_grpc_proxy_watch_upstream_watchers"),
    }),
  },
  {
    id: "chart-cache",
    title: "Range cache hit rate",
    unit: "%",
    values: (before, now) => {
      if (!before) return {};
      const hits = ratesBetween(before, now, "etcd_grpc_proxy_cache_hits_total", () => "").get("") ?? 0;
      const misses = ratesBetween(before, now, "etcd_grpc_proxy_cache_misses_total", () => "").get("") ?? 0;
      return { "hit rate": hits + misses > 0 ? (100 * hits) / (hits + misses) : undefined };
    },
  },
  {
    id: "chart-consistent",
    title: "Consistent cache: Ranges from memory, sent to etcd, and checks",
    unit: "req/s",
    values: (before, now) => {
      if (!before) return {};
      const rate = (name: string) => ratesBetween(before, now, name, () => "").get("") ?? 0;
      return {
        "from memory": rate("etcd_grpc_proxy_consistent_cache_answers_total"),
        "to etcd": rate("etcd_grpc_proxy_consistent_cache_fallbacks_total"),
        checks: rate("etcd_grpc_proxy_consistent_cache_checks_total"),
      };
    },
  },
  {
    id: "chart-coalesced",
    title: "Coalesced Ranges: Ranges that shared a call to etcd",
    unit: "req/s",
    values: (before, now) =>
      before
        ? {
            "shared a call": ratesBetween(before, now, "etcd_grpc_proxy_coalesced_ranges_total", () => "").get("") ?? 0,
          }
        : {},
  },
  {
    id: "chart-keepalive",
    title: "Lease keep-alive streams: clients' on the proxy's",
    unit: "streams",
    values: (_before, now) => ({
      "client streams": gauge(now, "etcd_grpc_proxy_lease_keepalive_client_streams"),
      "upstream streams": gauge(now, "etcd_grpc_proxy_lease_keepalive_upstream_streams"),
    }),
  },
  {
    id: "chart-endpoints",
    title: "Endpoint health (1 up, 0 down)",
    unit: "up",
    stepped: true,
    values: (_before, now) =>
      Object.fromEntries(sumBy(now.samples, "etcd_grpc_proxy_upstream_endpoint_up", (l) => label(l, "endpoint"))),
  },
];

/** The busiest methods by name, the others summed. */
function topOf(rates: Map<string, number>): Point {
  const sorted = [...rates].sort((a, b) => b[1] - a[1]);
  const point: Point = Object.fromEntries(sorted.slice(0, TOP_METHODS));
  if (sorted.length > TOP_METHODS) point["other"] = sorted.slice(TOP_METHODS).reduce((n, [, r]) => n + r, 0);
  return point;
}

/** The history of one chart: times, and each line's values at them. */
class Series {
  readonly times: number[] = [];
  readonly lines = new Map<string, Array<number | null>>();

  add(at: number, point: Point): void {
    this.times.push(at);
    for (const name of Object.keys(point)) {
      if (!this.lines.has(name)) this.lines.set(name, new Array<number | null>(this.times.length - 1).fill(null));
    }
    for (const [name, values] of this.lines) values.push(point[name] ?? null);
  }

  dropBefore(at: number): void {
    let n = 0;
    while (n < this.times.length && this.times[n]! < at) n++;
    if (n === 0) return;
    this.times.splice(0, n);
    for (const values of this.lines.values()) values.splice(0, n);
  }
}

/** A palette variable as a colour canvas understands (the variables use light-dark()). */
function resolvedColour(variable: string): string {
  const probe = document.createElement("span");
  probe.style.color = `var(${variable})`;
  document.body.append(probe);
  const colour = getComputedStyle(probe).color;
  probe.remove();
  return colour;
}

const format = (v: number | null | undefined, unit: string) =>
  v === null || v === undefined ? "–" : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;

/** Draws and keeps the charts; readings go in with `add`. */
export class ProxyCharts {
  private readonly series = CHARTS.map(() => new Series());
  private plots: Array<uPlot | undefined> = CHARTS.map(() => undefined);
  private last: Reading | undefined;
  /** Seconds of history shown. */
  private range = 300;

  constructor(private readonly host: HTMLElement) {
    addEventListener(
      "resize",
      debounce(() => this.redraw(), 200),
    );
  }

  setRange(seconds: number): void {
    this.range = seconds;
    this.draw();
  }

  add(reading: Reading): void {
    CHARTS.forEach((chart, i) => {
      const series = this.series[i]!;
      series.add(reading.at, chart.values(this.last, reading));
      series.dropBefore(reading.at - 3600); // an hour at most is kept
    });
    this.last = reading;
    this.draw();
  }

  /** Redraws from scratch: after a theme change (canvas colours are not CSS), or a new line. */
  redraw(): void {
    for (const p of this.plots) p?.destroy();
    this.plots = CHARTS.map(() => undefined);
    this.draw();
  }

  private draw(): void {
    const ink = resolvedColour("--ink");
    const grid = resolvedColour("--line");
    // Three charts a row on a wide screen, one on a phone.
    const width = Math.max(280, Math.min(560, Math.floor((this.host.clientWidth - 40) / 3) - 20));
    CHARTS.forEach((chart, i) => {
      const series = this.series[i]!;
      const names = [...series.lines.keys()];
      const figure = this.figureOf(chart);
      const latest = names.map((n) => `${n} ${format(series.lines.get(n)!.at(-1), chart.unit)}`).join(", ");
      figure.querySelector(".latest")!.textContent = names.length ? `now: ${latest}` : "no data yet";
      const now = series.times.at(-1) ?? Date.now() / 1000;
      const data: uPlot.AlignedData = [series.times, ...names.map((n) => series.lines.get(n)!)];
      let plot = this.plots[i];
      if (plot && plot.series.length !== names.length + 1) {
        plot.destroy();
        plot = undefined;
      }
      if (!plot) {
        plot = new uPlot(
          {
            width,
            height: 200,
            legend: { live: false },
            scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max * 1.1)] } },
            axes: [
              { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: "time" },
              { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: chart.unit, size: 50 },
            ],
            series: [
              { label: "time" },
              ...names.map((name, j) => ({
                label: name,
                stroke: PALETTE[j % PALETTE.length]!,
                width: 2,
                spanGaps: false,
                value: (_u: uPlot, v: number | null) => format(v, chart.unit),
                ...(chart.stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
              })),
            ],
          },
          data,
          figure.querySelector<HTMLElement>(".plot")!,
        );
        this.plots[i] = plot;
      } else plot.setData(data, false);
      plot.setScale("x", { min: now - this.range, max: now });
      // Canvas text is invisible to assistive technology: the plot says what its axes are.
      figure
        .querySelector(".plot")!
        .setAttribute(
          "aria-label",
          `${chart.title}: time on the horizontal axis, the last ${this.range / 60} minutes; ${chart.unit} on the vertical axis`,
        );
    });
  }

  private figureOf(chart: ChartSpec): HTMLElement {
    let figure = this.host.querySelector<HTMLElement>(`#${chart.id}`);
    if (!figure) {
      figure = document.createElement("figure");
      figure.id = chart.id;
      figure.innerHTML = `<figcaption></figcaption><div class="plot" role="img"></div><p class="latest" role="status"></p>`;
      figure.querySelector("figcaption")!.textContent = chart.title;
      this.host.append(figure);
    }
    return figure;
  }
}
