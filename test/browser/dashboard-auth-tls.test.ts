// The dashboard over https (--auto-tls) against a cluster with auth on: the
// user logs in, and only then sees the keys; 100k keys page through, a
// thousand at a time.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { ctl } from "../helpers/etcdctl.js";
import { login } from "../helpers/grpc-client.js";
import { useProxy } from "../helpers/fixture.js";

const SHOTS = SCREENSHOTS;
const KEYS = 100_000;

describe("the dashboard over https, with auth on", () => {
  const f = useProxy(1, {
    proxyArgs: ["--auto-tls", `--data-dir=${mkdtempSync(join(tmpdir(), "ecp-auto-tls-"))}`],
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      // Many keys, written in batches of 100 per transaction.
      for (let batch = 0; batch < KEYS / 100; batch++) {
        const success = Array.from({ length: 100 }, (_, i) => ({
          request_put: {
            key: Buffer.from(`many/${String(batch * 100 + i).padStart(5, "0")}`),
            value: Buffer.from("v"),
          },
        }));
        await f.direct.unary("KV", "Txn", { success });
      }
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["auth", "enable"]);
    },
  });
  const page = usePage({ ignoreHTTPSErrors: true });

  it("refuses the anonymous browse with etcd's reason, then logs in and pages through 100k keys", async () => {
    await page.goto(`https://${f.proxy.address}/`);
    await page.locator("#error", { hasText: "user name is empty" }).waitFor();
    await page.fill("#login input[name=user]", "root");
    await page.fill("#login input[name=password]", "rootpw");
    await page.click("#login button[type=submit]");
    await page.locator("#who", { hasText: "logged in as root" }).waitFor();
    await page.fill("#browse input[name=prefix]", "many/");
    await page.click("#browse button[type=submit]");
    await page.locator('.leaf[data-key="many/00999"]').waitFor();
    assert.equal(await page.locator(".leaf").count(), 1000, "one page of keys at a time");
    assert.equal(await page.textContent("#page"), "keys 1–1000 of 100000");
    await page.click("#next");
    await page.locator('.leaf[data-key="many/01999"]').waitFor();
    assert.equal(await page.locator(".leaf").count(), 1000);
    assert.equal(await page.textContent("#page"), "keys 1001–2000 of 100000");
    await page.click("#prev");
    await page.locator('.leaf[data-key="many/00000"]').waitFor();
    await page.screenshot({ path: `${SHOTS}/6-https-auth-paging.png` });

    // The token the page uses is a real etcd token: what the browser wrote, etcdctl reads.
    await page.fill("#create input[name=key]", "from-browser");
    await page.fill("#create textarea[name=value]", "over https");
    await page.click("#create button[type=submit]");
    await page.locator("#editor-key", { hasText: "from-browser" }).waitFor();
    const root = await login(f.direct, "root", "rootpw");
    const r = (await f.direct.unary("KV", "Range", { key: Buffer.from("from-browser") }, root)) as any;
    assert.equal(r.kvs[0].value.toString(), "over https");
  });
});
