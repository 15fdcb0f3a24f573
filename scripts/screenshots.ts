// The README's screenshots and the dashboard's load times, made anew:
// `npm run screenshots` starts a 3-member etcd and the proxy, writes some
// keys, runs a minute of traffic, and photographs the main pages in
// chromium into docs/screenshots/. It prints how long the page and the
// editor took to load (measured, never asserted).
import { mkdirSync } from "node:fs";
import { launchChromium } from "../test/helpers/browser.js";
import { startEtcd } from "../test/helpers/etcd.js";
import { EtcdGrpcClient } from "../test/helpers/grpc-client.js";
import { startTestProxy } from "../test/helpers/proxy.js";

const OUT = "docs/screenshots";
const TRAFFIC_SECONDS = Number(process.env.TRAFFIC_SECONDS ?? 60);

const etcd = await startEtcd(3);
const proxy = await startTestProxy(etcd.endpoints);
const client = new EtcdGrpcClient(proxy.address);
const put = (key: string, value: string) =>
  client.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) });
try {
  mkdirSync(OUT, { recursive: true });
  await put("config/app.toml", '[server]\nhost = "0.0.0.0"\nport = 8080\n\n[cache]\nsize = 512 # MiB\n');
  await put("config/app.json", JSON.stringify({ name: "shop", replicas: 3, features: ["search", "cart"] }));
  await put("config/app.json", JSON.stringify({ name: "shop", replicas: 5, features: ["search", "cart", "pay"] }));
  for (let i = 0; i < 40; i++) await put(`services/api/instances/${String(i).padStart(3, "0")}`, `10.0.0.${i}:8080`);

  // A minute of traffic: reads (some served by the cache), writes, watchers, keep-alives.
  const watchers = Array.from({ length: 20 }, () => {
    const s = client.stream("Watch", "Watch");
    s.on("error", () => {});
    s.write({ create_request: { key: Buffer.from("services/"), range_end: Buffer.from("services0") } });
    return s;
  });
  const { ID } = (await client.unary("Lease", "LeaseGrant", { TTL: 60 })) as { ID: string };
  const keepers = Array.from({ length: 5 }, () => {
    const s = client.stream("Lease", "LeaseKeepAlive");
    s.on("error", () => {});
    return s;
  });
  const browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const started = Date.now();
  await page.goto(`http://${proxy.address}/`);
  await page.locator(".leaf").first().waitFor();
  const firstKeys = Date.now() - started;
  const load = await page.evaluate<number>(
    'performance.getEntriesByType("navigation")[0].loadEventEnd - performance.getEntriesByType("navigation")[0].startTime',
  );
  await page.click("#tabs button[data-tab=proxy]"); // the charts sample while their page is open
  const traffic = setInterval(() => {
    for (let i = 0; i < 20; i++)
      void client.unary("KV", "Range", { key: Buffer.from("config/app.json"), serializable: true }).catch(() => {});
    void client
      .unary("KV", "Range", { key: Buffer.from("services/"), range_end: Buffer.from("services0") })
      .catch(() => {});
    void put(
      `services/api/instances/${String(Math.floor(Math.random() * 40)).padStart(3, "0")}`,
      String(Date.now()),
    ).catch(() => {});
    for (const k of keepers) k.write({ ID });
  }, 100);
  await new Promise((r) => setTimeout(r, TRAFFIC_SECONDS * 1000));
  clearInterval(traffic);
  await page.screenshot({ path: `${OUT}/proxy.png`, fullPage: true });

  await page.click("#tabs button[data-tab=keys]");
  await page.fill("#browse input[name=prefix]", "config/");
  await page.click("#browse button[type=submit]");
  const editorStarted = Date.now();
  await page.locator('.leaf[data-key="config/app.toml"]').click();
  await page.locator("#validation", { hasText: "valid TOML" }).waitFor();
  const editorLoad = Date.now() - editorStarted;
  await page.screenshot({ path: `${OUT}/keys-editor.png` });
  await page.locator('.leaf[data-key="config/app.json"]').click();
  await page.locator("#validation", { hasText: "valid JSON" }).waitFor();
  await page.click("#history-btn");
  await page.click("#diff-show");
  await page.locator("#diff-view .cm-changedText").first().waitFor();
  await page.screenshot({ path: `${OUT}/keys-diff.png` });

  await page.click("#tabs button[data-tab=cluster]");
  await page.locator("#endpoint-table td.db meter").first().waitFor();
  await page.screenshot({ path: `${OUT}/cluster.png` });
  await page.click("#tabs button[data-tab=maintenance]");
  await page.locator("#member-table tbody tr").first().waitFor();
  await page.screenshot({ path: `${OUT}/maintenance.png` });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.click("#tabs button[data-tab=watch]");
  await page.fill("#watch-form input[name=prefix]", "services/");
  await page.click("#watch-start");
  await page.locator("#watch-state", { hasText: "watching from revision" }).waitFor();
  for (let i = 0; i < 6; i++) await put(`services/api/instances/00${i}`, `10.0.1.${i}:8080`);
  await page.locator("#events li").nth(5).waitFor();
  await page.screenshot({ path: `${OUT}/watch-dark.png` });

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
  await phone.goto(`http://${proxy.address}/`);
  await phone.locator(".leaf").first().waitFor();
  await phone.screenshot({ path: `${OUT}/phone-keys.png` });
  await browser.close();
  for (const s of watchers) s.cancel();
  for (const s of keepers) s.cancel();
  console.log(
    `page loaded in ${Math.round(load)} ms, first keys shown after ${firstKeys} ms, ` +
      `editor (first key opened, CodeMirror loaded) in ${editorLoad} ms; screenshots in ${OUT}/`,
  );
} finally {
  client.close();
  await proxy.close();
  await etcd.stop();
}
