// The Proxy page's reading of Prometheus text (web-demo/src/prometheus.ts):
// samples, rates between readings, and histogram quantiles.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Histogram, Registry } from "prom-client";
import { methodOf, parseMetrics, quantilesBetween, ratesBetween } from "../../web-demo/src/prometheus.js";

describe("the dashboard's metrics reading", () => {
  it("reads samples with labels, escapes and special values, skipping comments", () => {
    const samples = parseMetrics(
      [
        "# HELP x a counter",
        "# TYPE x counter",
        'x{grpc_service="etcdserverpb.KV",grpc_method="Range",note="a \\"quoted\\" \\\\ value"} 12',
        "up 1",
        'h_bucket{le="+Inf"} 3',
        "not a sample line",
      ].join("\n"),
    );
    assert.deepEqual(samples, [
      {
        name: "x",
        labels: { grpc_service: "etcdserverpb.KV", grpc_method: "Range", note: 'a "quoted" \\ value' },
        value: 12,
      },
      { name: "up", labels: {}, value: 1 },
      { name: "h_bucket", labels: { le: "+Inf" }, value: 3 },
    ]);
    assert.equal(methodOf(samples[0]!.labels), "KV/Range");
  });

  it("turns two readings of a counter into a rate per second, by method", () => {
    const at = (t: number, n: number) => ({
      at: t,
      samples: parseMetrics(
        `c{grpc_service="etcdserverpb.KV",grpc_method="Range",grpc_code="OK"} ${n}\n` +
          `c{grpc_service="etcdserverpb.KV",grpc_method="Range",grpc_code="NotFound"} ${n}\n`,
      ),
    });
    assert.deepEqual([...ratesBetween(at(10, 5), at(12, 25), "c", methodOf)], [["KV/Range", 20]]);
    // A restarted proxy's counter starts again from zero.
    assert.deepEqual([...ratesBetween(at(10, 50), at(12, 4), "c", methodOf)], [["KV/Range", 4]]);
  });

  it("finds histogram quantiles as prom-client's own buckets hold them, within one bucket", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.double({ min: 0.0001, max: 4, noNaN: true }), { minLength: 1, maxLength: 200 }),
        async (values) => {
          const registry = new Registry();
          const buckets = [0.001, 0.01, 0.1, 0.5, 1, 2, 5];
          const h = new Histogram({
            name: "lat",
            help: "h",
            labelNames: ["grpc_method"],
            buckets,
            registers: [registry],
          });
          const before = { at: 0, samples: parseMetrics(await registry.metrics()) };
          for (const v of values) h.observe({ grpc_method: "Range" }, v);
          const after = { at: 1, samples: parseMetrics(await registry.metrics()) };
          const p99 = quantilesBetween(before, after, "lat", 0.99, (l) => l["grpc_method"]).get("Range")!;
          const sorted = [...values].sort((a, b) => a - b);
          const truth = sorted[Math.ceil(0.99 * sorted.length) - 1]!;
          // The estimate lies in the bucket that holds the true quantile.
          const upper = buckets.find((b) => truth <= b)!;
          const lower = [0, ...buckets][buckets.indexOf(upper)]!;
          assert.ok(
            p99 >= lower - 1e-9 && p99 <= upper + 1e-9,
            `p99 ${p99}, truth ${truth}, bucket ${lower}..${upper}`,
          );
        },
      ),
      { numRuns: 50 },
    );
  });
});
