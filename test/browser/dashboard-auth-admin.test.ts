// Auth administration in the dashboard, in chromium: users, roles and
// permissions made from the page, auth turned on from it, and a user with a
// read-only prefix role refused a write elsewhere with etcd's own message.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { ETCD_LINE } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import { login } from "../helpers/grpc-client.js";

describe("the dashboard's auth administration", () => {
  const f = useProxy(1);
  const page = usePage();

  const addUser = async (name: string, password: string) => {
    await page.fill("#user-add input[name=name]", name);
    await page.fill("#user-add input[name=password]", password);
    await page.click("#user-add button[type=submit]");
    await page.locator(`#user-table tr[data-user="${name}"]`).waitFor();
  };

  it("makes a user with a read-only prefix role, turns auth on, and that user is refused a write elsewhere", async () => {
    await page.goto(`http://${f.proxy.address}/`);
    await page.click("#tabs button[data-tab=auth]");
    const off = ETCD_LINE === "3.4" ? "this etcd does not say whether auth is on" : "auth is off";
    await page.locator("#auth-state", { hasText: off }).waitFor();

    await addUser("root", "rootpw");
    await page.fill("#role-add input[name=name]", "reader");
    await page.click("#role-add button[type=submit]");
    await page.locator('#role-table tr[data-role="reader"]').waitFor();
    await page.selectOption("#perm-grant select[name=role]", "reader");
    await page.selectOption("#perm-grant select[name=type]", "0");
    await page.selectOption("#perm-grant select[name=scope]", "prefix");
    await page.fill("#perm-grant input[name=key]", "pub/");
    await page.click("#perm-grant button[type=submit]");
    await page.locator('#role-table tr[data-role="reader"] .chip', { hasText: "read on prefix pub/" }).waitFor();
    await addUser("ro", "ropw");
    const ro = page.locator('#user-table tr[data-user="ro"]');
    await ro.locator("select").selectOption("reader");
    await ro.getByRole("button", { name: "Grant the role to ro" }).click();
    await ro.locator(".chip", { hasText: "reader" }).waitFor();

    // etcd's own account of what the page made.
    const role = (await f.direct.unary("Auth", "RoleGet", { role: "reader" })) as {
      perm: Array<{ permType: number; key: Buffer; range_end: Buffer }>;
    };
    // permType 0 is READ.
    assert.deepEqual(
      role.perm.map((p) => [p.permType, p.key.toString(), p.range_end.toString()]),
      [[0, "pub/", "pub0"]],
    );
    assert.deepEqual(((await f.direct.unary("Auth", "UserGet", { name: "ro" })) as { roles: string[] }).roles, [
      "reader",
    ]);
    await page.screenshot({ path: `${SCREENSHOTS}/7-auth-admin.png`, fullPage: true });

    // Turning auth on asks first, saying what happens; root gets the root role as etcdctl gives it.
    let asked = "";
    page.once("dialog", (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await page.click("#auth-enable");
    // The page's own refresh is now anonymous, and etcd refuses it.
    await page.locator("#error", { hasText: "user name is empty" }).waitFor();
    assert.match(asked, /^Turn auth on\?/);
    assert.match(asked, /anonymous reads and writes are refused/);
    const rootToken = await login(f.direct, "root", "rootpw");
    await f.direct.unary("KV", "Put", { key: Buffer.from("pub/a"), value: Buffer.from("1") }, rootToken);

    // ro reads its prefix, and is refused a write outside it with etcd's message.
    await page.fill("#login input[name=user]", "ro");
    await page.fill("#login input[name=password]", "ropw");
    await page.click("#login button[type=submit]");
    await page.locator("#who", { hasText: "logged in as ro" }).waitFor();
    await page.click("#tabs button[data-tab=keys]");
    await page.fill("#browse input[name=prefix]", "pub/");
    await page.click("#browse button[type=submit]");
    await page.locator('.leaf[data-key="pub/a"]').waitFor();
    await page.fill("#create input[name=key]", "other/x");
    await page.fill("#create textarea[name=value]", "no");
    await page.click("#create button[type=submit]");
    await page.locator("#error", { hasText: "etcdserver: permission denied" }).waitFor();
    const other = (await f.direct.unary("KV", "Range", { key: Buffer.from("other/x") }, rootToken)) as {
      kvs: unknown[];
    };
    assert.deepEqual(other.kvs, [], "nothing was written");

    // Back as root, auth goes off again from the page.
    await page.fill("#login input[name=user]", "root");
    await page.fill("#login input[name=password]", "rootpw");
    await page.click("#login button[type=submit]");
    await page.locator("#who", { hasText: "logged in as root" }).waitFor();
    await page.click("#tabs button[data-tab=auth]");
    page.once("dialog", (dialog) => void dialog.accept());
    await page.click("#auth-disable");
    await page.locator("#auth-state", { hasText: ETCD_LINE === "3.4" ? "does not say" : "auth is off" }).waitFor();
    const anonymous = (await f.direct.unary("KV", "Range", { key: Buffer.from("pub/a") })) as { kvs: unknown[] };
    assert.equal(anonymous.kvs.length, 1, "auth is off: anonymous reads work again");
  });
});
