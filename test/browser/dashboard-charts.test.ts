// The Proxy page's charts in chromium, fed by real traffic through the
// proxy: requests and latency per method, watch coalescing, the cache's
// hit rate, the consistent cache's reads, coalesced Ranges, keep-alive streams and endpoint health, each with a title,
// axes with units, a time range, and its latest values in words.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";
import { proxyMetric } from "../helpers/metrics.js";

type Plain = Record<string, any>;

describe("the dashboard's proxy charts", () => {
  const f = useProxy(1, { proxyArgs: ["--consistent-cache-prefix=chart-lin/"] });
  const page = usePage();
  const streams: Array<ClientDuplexStream<Plain, Plain>> = [];
  after(() => streams.forEach((s) => s.cancel()));

  const latest = (id: string) => page.locator(`#${id} .latest`).textContent();
  const number = (text: string, name: string) => Number(new RegExp(`${name} ([\\d.]+)`).exec(text)?.[1] ?? NaN);

  it("charts requests, latency, coalescing, cache hits, keep-alives and endpoints from real traffic", async () => {
    await f.client.unary("KV", "Put", { key: Buffer.from("chart/k"), value: Buffer.from("v") });
    // The proxy's own watchers count too: the cache's invalidation watch opens with its first read.
    await f.client.unary("KV", "Range", { key: Buffer.from("chart/k"), serializable: true });
    await new Promise((r) => setTimeout(r, 500));
    const clientWatchers = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_watch_client_watchers");
    const upstreamWatchers = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_watch_upstream_watchers");
    // Five watchers of one key: one upstream watcher.
    for (let i = 0; i < 5; i++) {
      const s = f.client.stream("Watch", "Watch");
      s.on("error", () => {});
      s.write({ create_request: { key: Buffer.from("chart/k") } });
      streams.push(s);
    }
    // Three keep-alive streams for one lease: one upstream stream.
    const { ID } = (await f.client.unary("Lease", "LeaseGrant", { TTL: 60 })) as Plain;
    for (let i = 0; i < 3; i++) {
      const s = f.client.stream("Lease", "LeaseKeepAlive");
      s.on("error", () => {});
      s.write({ ID });
      streams.push(s);
    }
    await page.goto(`http://${f.proxy.address}/`);
    await page.click('#tabs button[data-tab="proxy"]');
    await page.locator("#chart-requests .latest", { hasText: "no data yet" }).waitFor();
    // Traffic between readings: serializable reads, one after another so that all but the first come
    // within the cache's 100 ms TTL of its fill (hits), and writes.
    const traffic = setInterval(() => {
      void (async () => {
        for (let i = 0; i < 10; i++) {
          await f.client.unary("KV", "Range", { key: Buffer.from("chart/k"), serializable: true }).catch(() => {});
        }
        // Linearizable, from the replica of chart-lin/.
        await f.client.unary("KV", "Range", { key: Buffer.from("chart-lin/k") }).catch(() => {});
        // Linearizable, five at once: those that come while the first is with etcd share the next call.
        await Promise.all(
          Array.from({ length: 5 }, () =>
            f.client.unary("KV", "Range", { key: Buffer.from("chart/k") }).catch(() => {}),
          ),
        );
      })();
      void f.client.unary("KV", "Put", { key: Buffer.from("chart/other"), value: Buffer.from("v") }).catch(() => {});
    }, 100);
    try {
      await page.locator("#chart-requests .latest", { hasText: "KV/Range" }).waitFor({ timeout: 15_000 });
      await page.locator("#chart-latency .latest", { hasText: "KV/Range" }).waitFor();
      await page.locator("#chart-cache .latest", { hasText: "hit rate" }).waitFor();
      await page.locator("#chart-consistent .latest", { hasText: /from memory (?!0\.00)/ }).waitFor();
      await page.locator("#chart-coalesced .latest", { hasText: /shared a call (?!0\.00)/ }).waitFor();
    } finally {
      clearInterval(traffic);
    }
    const requests = (await latest("chart-requests"))!;
    assert.ok(number(requests, "KV/Range") > 10, requests);
    assert.ok(number(requests, "KV/Put") > 1, requests);
    assert.match((await latest("chart-latency"))!, /KV\/Range [\d.]+ ms/);
    const cache = (await latest("chart-cache"))!;
    const hitRate = number(cache, "hit rate");
    assert.ok(hitRate > 0 && hitRate <= 100, cache);
    const consistent = (await latest("chart-consistent"))!;
    assert.ok(number(consistent, "from memory") > 0, consistent);
    assert.ok(number(consistent, "checks") > 0, consistent);
    const coalesced = (await latest("chart-coalesced"))!;
    assert.ok(number(coalesced, "shared a call") > 0, coalesced);
    const watch = (await latest("chart-watch"))!;
    assert.equal(number(watch, "client watchers"), clientWatchers + 5, watch);
    assert.equal(number(watch, "upstream watchers"), upstreamWatchers + 1, watch);
    const keepalive = (await latest("chart-keepalive"))!;
    assert.equal(number(keepalive, "client streams"), 3, keepalive);
    assert.equal(number(keepalive, "upstream streams"), 1, keepalive);
    assert.match((await latest("chart-endpoints"))!, new RegExp(`${f.etcd.members[0]!.clientUrl}[^,]* 1\\.00 up`));

    await page.selectOption("#chart-range", "900");
    // Every chart: a title, a drawn canvas, a time axis and a value axis labelled with its unit, a legend.
    for (const [id, unit] of [
      ["chart-requests", "req/s"],
      ["chart-latency", "ms"],
      ["chart-watch", "watchers"],
      ["chart-cache", "%"],
      ["chart-consistent", "req/s"],
      ["chart-coalesced", "req/s"],
      ["chart-keepalive", "streams"],
      ["chart-endpoints", "up"],
    ] as const) {
      assert.ok(((await page.textContent(`#${id} figcaption`)) ?? "").length > 5, `${id} has a title`);
      assert.equal(await page.locator(`#${id} canvas`).count(), 1, `${id} drawn`);
      assert.equal(await page.locator(`#${id} .u-axis`).count(), 2, `${id} has two axes`);
      assert.match(
        (await page.getAttribute(`#${id} .plot`, "aria-label"))!,
        new RegExp(
          `time on the horizontal axis, the last 15 minutes; ${unit.replace("/", "\\/")} on the vertical axis$`,
        ),
      );
      assert.ok((await page.locator(`#${id} .u-legend .u-series`).count()) >= 1, `${id} has a legend`);
    }

    await page.screenshot({ path: `${SCREENSHOTS}/20-proxy-charts.png`, fullPage: true });
    // A theme switch redraws them in the new colours.
    await page.click("#theme");
    await page.click("#theme");
    assert.equal(await page.locator("#chart-requests canvas").count(), 1);
    await page.screenshot({ path: `${SCREENSHOTS}/21-proxy-charts-dark.png`, fullPage: true });
  });
});
