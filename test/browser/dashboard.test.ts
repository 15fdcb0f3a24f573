// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core), served by the proxy and talking only to it. Screenshots
// of each step go to test-results/dashboard/.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { SCREENSHOTS, editorText, typeInEditor, usePage, waitForEditorText } from "../helpers/browser.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";

const SHOTS = SCREENSHOTS;

describe("the dashboard in chromium", () => {
  const f = useProxy(1);
  const page = usePage();
  /** A key's mod revision, straight from etcd. */
  const revOf = async (key: string) =>
    ((await f.direct.unary("KV", "Range", { key: Buffer.from(key) })) as { kvs: Array<{ mod_revision: string }> })
      .kvs[0]!.mod_revision;
  const shot = (name: string) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

  it("creates a key and shows it in the tree", async () => {
    await page.goto(`http://${f.proxy.address}/`);
    await page.fill("#create input[name=key]", "dash/hello");
    await page.fill("#create textarea[name=value]", "world");
    await page.click("#create button[type=submit]");
    await page.locator('.leaf[data-key="dash/hello"]').waitFor();
    // The editor opens the new key once etcd has answered for it.
    await waitForEditorText(page, "world");
    assert.equal(await page.textContent("#editor-key"), "dash/hello");
    assert.equal(await ctl(f.proxy.address, ["get", "dash/hello", "--print-value-only"]), "world\n");
    await shot("1-created");
  });

  it("an edit after etcdctl changed the key is a conflict, and nothing is overwritten", async () => {
    await ctl(f.etcd.members[0]!.endpoint, ["put", "dash/hello", "changed-elsewhere"]);
    await typeInEditor(page, "mine");
    await page.click("#save");
    await page.locator("#editor-status.conflict").waitFor();
    assert.match((await page.textContent("#editor-status")) ?? "", /Conflict/);
    assert.equal(
      await ctl(f.etcd.members[0]!.endpoint, ["get", "dash/hello", "--print-value-only"]),
      "changed-elsewhere\n",
    );
    await shot("2-conflict");
  });

  it("shows keys without a leading separator, values as JSON or hex, and a key's history", async () => {
    await ctl(f.etcd.members[0]!.endpoint, ["put", "plain", '{"a":1}']);
    await ctl(f.etcd.members[0]!.endpoint, ["put", "plain", '{"a":2}']);
    await page.click("#browse button[type=submit]");
    await page.locator('.leaf[data-key="plain"]').click();
    await page.locator("#editor-key", { hasText: "plain" }).waitFor();
    await page.selectOption("#format", "json");
    assert.equal(await page.inputValue("#format"), "json", "detected");
    await waitForEditorText(page, '{\n  "a": 2\n}');
    await page.selectOption("#format", "hex");
    await waitForEditorText(page, "7b 22 61 22 3a 32 7d");
    await page.click("#history-btn");
    await page.locator("#history li", { hasText: '{"a":1}' }).waitFor();
    await page.selectOption("#format", "text");
    await shot("3-json-history");
  });

  it("shows a Kubernetes protobuf object as its type and fields, read-only", async () => {
    // A ConfigMap as kube-apiserver stores it: "k8s\0", then runtime.Unknown
    // {typeMeta {apiVersion, kind}, raw: the object}, the object being
    // {metadata {name, namespace}, data {key, value}}.
    const field = (n: number, payload: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, payload.length]), payload]);
    const str = (n: number, s: string) => field(n, Buffer.from(s));
    const configMap = Buffer.concat([
      field(1, Buffer.concat([str(1, "demo"), str(3, "default")])),
      field(2, Buffer.concat([str(1, "colour"), str(2, "blue")])),
    ]);
    const value = Buffer.concat([
      Buffer.from("k8s\0", "latin1"),
      field(1, Buffer.concat([str(1, "v1"), str(2, "ConfigMap")])),
      field(2, configMap),
      str(4, "application/vnd.kubernetes.protobuf"),
    ]);
    await f.direct.unary("KV", "Put", { key: Buffer.from("registry/configmaps/default/demo"), value });
    await page.click('#tabs button[data-tab="keys"]');
    await page.fill("#browse input[name=prefix]", "registry/");
    await page.fill("#browse input[name=separator]", "|"); // a flat list: the key is one leaf
    await page.click("#browse button[type=submit]");
    await page.locator('.leaf[data-key="registry/configmaps/default/demo"]').click();
    await page.locator("#editor-key", { hasText: "registry/configmaps/default/demo" }).waitFor();
    assert.equal(await page.inputValue("#format"), "kubernetes", "chosen for a Kubernetes value");
    const shown = await editorText(page);
    for (const line of ["apiVersion: v1", "kind: ConfigMap", "contentType: application/vnd.kubernetes.protobuf"]) {
      assert.ok(shown.includes(line), `${line} in:\n${shown}`);
    }
    assert.match(
      shown,
      /raw object \(protobuf fields by number\):\n {2}1:\n {4}1: "demo"\n {4}3: "default"\n {2}2:\n {4}1: "colour"\n {4}2: "blue"/,
    );
    await shot("9-kubernetes-object");
    // Saving from the decoded view would corrupt the object: refused.
    await page.click("#save");
    await page.locator("#error", { hasText: "read-only" }).waitFor();
    await page.selectOption("#format", "text");
    await page.fill("#browse input[name=prefix]", "");
    await page.fill("#browse input[name=separator]", "/");
  });

  it("bookmarks a key across reloads, and copies a key or value in one click", async () => {
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], {
      origin: `http://${f.proxy.address}`,
    });
    await page.click('#tabs button[data-tab="keys"]');
    await page.click("#browse button[type=submit]");
    await page.locator('#tree .leaf[data-key="plain"]').click();
    await page.locator("#editor-key", { hasText: "plain" }).waitFor();
    await page.click("#bookmark");
    await page.locator('#bookmarks li[data-bookmark="plain"]').waitFor();
    assert.equal(await page.textContent("#bookmark"), "Remove bookmark");
    await page.reload();
    await page.locator('#bookmarks li[data-bookmark="plain"]').click();
    await page.locator("#editor-key", { hasText: "plain" }).waitFor();
    await page.click("#copy-key");
    await page.locator("#editor-status", { hasText: "key copied" }).waitFor();
    assert.equal(await page.evaluate<string>("navigator.clipboard.readText()"), "plain");
    await page.click("#copy-value");
    await page.locator("#editor-status", { hasText: "value copied" }).waitFor();
    assert.equal(await page.evaluate<string>("navigator.clipboard.readText()"), await editorText(page));
    await shot("11-bookmarks");
    await page.click("#bookmark");
    assert.equal(await page.locator("#bookmarks li").count(), 0);
  });

  it("shows a live watch event when etcdctl writes straight to etcd", async () => {
    await page.click('#tabs button[data-tab="watch"]');
    await page.fill("#watch-form input[name=prefix]", "dash/");
    await page.click("#watch-start");
    await page.locator("#watch-state", { hasText: "watching from revision" }).waitFor();
    await ctl(f.etcd.members[0]!.endpoint, ["put", "dash/live", "from-etcdctl"]);
    await page.locator("#events li", { hasText: "PUT dash/live = from-etcdctl" }).waitFor();
    await shot("4-watch");
  });

  it("filters watch events, holds them while paused, and exports what it shows", async () => {
    const at = f.etcd.members[0]!.endpoint;
    await page.click('#tabs button[data-tab="watch"]');
    await page.fill("#watch-form input[name=prefix]", "flt/");
    await page.click("#watch-start");
    await page.locator("#watch-state", { hasText: "watching from revision" }).waitFor();
    await ctl(at, ["put", "flt/a", "1"]);
    await ctl(at, ["put", "flt/b", "2"]);
    await ctl(at, ["del", "flt/a"]);
    await page.locator("#events li", { hasText: "DELETE flt/a" }).waitFor();
    assert.equal(await page.locator("#events li").count(), 3);
    await page.uncheck("#watch-filter input[name=deletes]");
    assert.equal(await page.locator("#events li").count(), 2);
    await page.locator("#watch-filter-state", { hasText: "1 hidden by the filters" }).waitFor();
    await page.fill("#watch-filter input[name=pattern]", "b");
    assert.deepEqual(await page.locator("#events li").allTextContents(), ["PUT flt/b = 2 @" + (await revOf("flt/b"))]);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#watch-export")]);
    const exported = (await readFile(await download.path(), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      exported.map((e: { type: string; key: string; value: string }) => [e.type, e.key, e.value]),
      [["PUT", "flt/b", "2"]],
    );
    await page.fill("#watch-filter input[name=pattern]", "");
    await page.check("#watch-filter input[name=deletes]");
    await page.click("#watch-pause");
    await ctl(at, ["put", "flt/c", "3"]);
    await page.locator("#watch-filter-state", { hasText: "1 held while paused" }).waitFor();
    assert.equal(await page.locator("#events li", { hasText: "flt/c" }).count(), 0);
    await page.click("#watch-pause");
    await page.locator("#events li", { hasText: "PUT flt/c = 3" }).waitFor();
    await shot("12-watch-filters");

    // Changes to a bookmarked key notify, once the browser allows it.
    await page.context().grantPermissions(["notifications"], { origin: `http://${f.proxy.address}` });
    await page.evaluate(`localStorage.setItem("etcd-bookmarks", '["flt/b"]')`);
    await page.click("#notify");
    await page.locator("#notify-state", { hasText: "notifying on changes to 1 bookmarked key" }).waitFor();
    await ctl(at, ["put", "flt/b", "4"]);
    await page.locator("#notified li", { hasText: "changed: flt/b" }).waitFor();
    await page.evaluate(`localStorage.removeItem("etcd-bookmarks")`);
  });

  it("grants a lease and counts its TTL down", async () => {
    await page.click('#tabs button[data-tab="leases"]');
    await page.fill("#grant input[name=ttl]", "30");
    await page.click("#grant button[type=submit]");
    const ttl = page.locator("#lease-table tbody tr td.ttl").first();
    await ttl.waitFor();
    const first = parseInt((await ttl.textContent()) ?? "", 10);
    await page.waitForTimeout(2500);
    const later = parseInt((await ttl.textContent()) ?? "", 10);
    assert.ok(first > 0 && later < first, `the countdown moved (${first} -> ${later})`);
    await shot("5-lease");
  });

  it("shows etcd's status from each endpoint, with the leader", async () => {
    await page.click('#tabs button[data-tab="cluster"]');
    const row = page.locator("#endpoint-table tbody tr").first();
    await row.waitFor();
    const text = (await row.textContent()) ?? "";
    assert.match(text, new RegExp(f.etcd.members[0]!.clientUrl.replace(/[.:/]/g, "\\$&")));
    assert.match(text, /\(leader\)/);
    assert.equal(await row.locator("td.state").textContent(), "ok");
    assert.match(text, /of 2048\.00 MiB/, "the default quota, read from the member");
    await shot("6-cluster");
  });

  it("shows the proxy's endpoints and watch coalescing", async () => {
    await page.click('#tabs button[data-tab="proxy"]');
    await page.locator("#coalescing").waitFor();
    assert.match((await page.textContent("#coalescing")) ?? "", /client watchers on \d+ upstream watchers/);
    await shot("7-proxy");
  });
});
