// The attacks a web page can make on a proxy its visitor can reach, made by
// a real chromium: a cross-site page trying to take the cluster over, a
// DNS-rebound name, a frame around the dashboard, and a login typed while
// the dashboard's script is blocked. etcd itself is asked afterwards.
import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { SCREENSHOTS, launchChromium } from "../helpers/browser.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** A page of another site: every way a page can send a request without asking (no CORS preflight). */
function takeoverPage(proxy: string): string {
  const json = (o: object) => JSON.stringify(JSON.stringify(o));
  const writes: Array<[string, object]> = [
    ["/v3/auth/user/add", { name: "root", password: "attacker" }],
    ["/v3/auth/user/grant", { user: "root", role: "root" }],
    ["/v3/auth/enable", {}],
    ["/v3/kv/put", { key: b64("stolen/fetch"), value: b64("x") }],
    ["/etcdserverpb.KV/Put", { key: b64("stolen/connect"), value: b64("x") }],
  ];
  // text/plain sends "name=value": this name and value make the body the JSON etcd's gateway reads.
  const formJson = JSON.stringify({ key: b64("stolen/form"), value: b64("x"), pad: "" }).slice(0, -2);
  const get = (path: string) =>
    `${proxy}${path}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ key: b64("k") }))}`;
  return `<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="plain" method="post" enctype="text/plain" action="${proxy}/v3/kv/put" target="sink1">
  <input name='${formJson}' value='"}'></form>
<form id="urlencoded" method="post" action="${proxy}/v3/kv/put" target="sink2">
  <input name="${b64("stolen/urlencoded")}" value="x"></form>
<form id="multipart" method="post" enctype="multipart/form-data" action="${proxy}/v3/auth/enable" target="sink3">
  <input name="x" value="{}"></form>
<img src="${get("/etcdserverpb.Maintenance/HashKV")}"><img src="${get("/etcdserverpb.KV/Range")}">
<script>
(async () => {
  for (const [path, body] of [${writes.map(([p, o]) => `[${JSON.stringify(p)}, ${json(o)}]`).join(", ")}]) {
    await fetch(${JSON.stringify(proxy)} + path, { method: "POST", mode: "no-cors", body }).catch(() => {});
  }
  for (const id of ["plain", "urlencoded", "multipart"]) document.getElementById(id).submit();
  document.title = "sent";
})();
</script></body></html>`;
}

describe("a web page attacking the proxy through its visitor's chromium", () => {
  const f = useProxy(1);
  let browser: Browser;
  let page: Page;
  let attacker: http.Server;
  let attackerPort = 0;
  const proxyPort = () => Number(f.proxy.address.split(":")[1]);
  const pages = new Map<string, string>();
  before(async () => {
    attacker = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "text/html" }).end(pages.get(req.url ?? "") ?? "");
    });
    await new Promise<void>((r) => attacker.listen(0, "127.0.0.1", r));
    attackerPort = (attacker.address() as AddressInfo).port;
    // evil.example is the attacker's site; attacker.example is a name whose DNS they rebound to the proxy.
    browser = await launchChromium([
      "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP attacker.example 127.0.0.1",
    ]);
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.close();
    attacker?.close();
  });
  const etcdDirect = () => f.etcd.members[0]!.endpoint;

  for (const name of ["127.0.0.1", "localhost"]) {
    it(`cannot take the cluster over or write one key (the proxy as ${name})`, async () => {
      pages.set(`/takeover-${name}`, takeoverPage(`http://${name}:${proxyPort()}`));
      const statuses: number[] = [];
      page.on("response", (r) => r.url().includes(`:${proxyPort()}/`) && statuses.push(r.status()));
      await page.goto(`http://evil.example:${attackerPort}/takeover-${name}`);
      await page.waitForFunction('document.title === "sent"');
      // The three forms navigate their frames; their answers are the last to come.
      const deadline = Date.now() + 10_000;
      while (statuses.filter((s) => s === 403).length < 3 && Date.now() < deadline) await page.waitForTimeout(50);
      page.removeAllListeners("response");
      await page.screenshot({ path: `${SCREENSHOTS}/attack-takeover-${name}.png` });
      assert.ok(statuses.length >= 3, `the forms' answers were seen: ${statuses.join(",")}`);
      assert.ok(
        statuses.every((s) => s === 403),
        `every answer a page could see was a refusal: ${statuses.join(",")}`,
      );
      assert.equal((await ctl(etcdDirect(), ["user", "list"])).trim(), "", "no user was added");
      assert.equal(
        (await ctl(etcdDirect(), ["get", "stolen/", "--prefix", "--keys-only"])).trim(),
        "",
        "no key was written",
      );
      assert.equal(await ctl(etcdDirect(), ["put", "auth/still-off", "1"]), "OK\n", "auth is still off");
    });
  }

  it("a rebound name reads nothing: the page and its same-origin calls get 421", async () => {
    await ctl(etcdDirect(), ["put", "secret", "the-crown-jewels"]);
    const origin = `http://attacker.example:${proxyPort()}`;
    const direct = await page.goto(`${origin}/`);
    assert.equal(direct?.status(), 421);
    assert.match(await page.textContent("body").then(String), /Host header was unrecognized/);
    // Whatever document the rebound origin holds (here the refusal itself), its script calls the proxy as same-origin.
    // A string, not a function: the test's compiler would name the function's helpers in the page.
    const results = (await page.evaluate(`(async () => {
      const body = JSON.stringify({ key: ${JSON.stringify(b64("secret"))} });
      const answers = [];
      for (const path of ["/v3/kv/range", "/etcdserverpb.KV/Range"]) {
        const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body });
        answers.push({ status: r.status, body: await r.text() });
      }
      return answers;
    })()`)) as Array<{ status: number; body: string }>;
    for (const r of results) {
      assert.equal(r.status, 421);
      assert.ok(!r.body.includes(b64("the-crown-jewels")), "nothing of etcd's data");
    }
  });

  it("another site cannot frame the dashboard", async () => {
    const dashboard = `http://127.0.0.1:${proxyPort()}/`;
    pages.set("/frame", `<!doctype html><iframe id="victim" src="${dashboard}" width="800" height="600"></iframe>`);
    const framed = page.waitForResponse((r) => r.url() === dashboard);
    await page.goto(`http://evil.example:${attackerPort}/frame`);
    const response = await framed;
    assert.equal(response.headers()["x-frame-options"], "DENY");
    assert.match(response.headers()["content-security-policy"] ?? "", /frame-ancestors 'none'/);
    await page.waitForTimeout(300);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    assert.ok(frame);
    assert.notEqual(frame.url(), dashboard, "chromium did not load the dashboard into the frame");
    assert.equal(await frame.$("#login"), null);
    await page.screenshot({ path: `${SCREENSHOTS}/attack-frame.png` });
  });
});

describe("the dashboard's login with its script blocked", () => {
  const f = useProxy(1);
  let browser: Browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => browser?.close());

  it("sends the password nowhere, in no URL and no body, when Enter is pressed", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    const sent: string[] = [];
    page.on("request", (r) => sent.push(`${r.method()} ${r.url()} ${r.postData() ?? ""}`));
    await page.goto(`http://${f.proxy.address}/`);
    await page.fill("#login input[name=user]", "root");
    await page.fill("#login input[name=password]", "hunter2-secret");
    await page.focus("#login input[name=password]");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(500);
    // The Auth tab's form is hidden without the script, but Enter in it would submit it the same way.
    await page.evaluate(`(() => {
      const input = document.querySelector("#user-add input[name=password]");
      input.value = "second-secret";
      input.form.requestSubmit();
    })()`);
    await page.waitForTimeout(500);
    assert.deepEqual(
      sent.filter((s) => s.includes("secret")),
      [],
      "no request carried a password",
    );
    assert.equal(page.url(), `http://${f.proxy.address}/`);
    await context.close();
  });
});
