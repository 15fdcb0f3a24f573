// What a browser can be made to send to the proxy, sent as a browser would
// send it, over HTTP/1.1 (what browsers use for http://) and HTTP/2: a page
// of another site may not write or make etcd work (403 before anything
// reaches etcd), a DNS-rebound name reaches nothing (421), and the clients
// that are not browsers keep working, by IP and by name.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import type { RunningProxy } from "../../src/main.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { freePort } from "../helpers/ports.js";
import { startTestProxy } from "../helpers/proxy.js";
import { envelope, rawGrpc } from "../helpers/raw.js";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Sent {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Over HTTP/2 (h2c) rather than HTTP/1.1. */
  h2?: boolean;
}

/** One request with exactly the headers given (Host included), over HTTP/1.1 or h2c. */
function send(address: string, { method = "POST", path, headers = {}, body, h2 = false }: Sent): Promise<Answer> {
  const [hostname, port] = address.split(":") as [string, string];
  if (!h2) {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: hostname, port: Number(port), method, path, headers }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on("error", reject);
    const { host, ...rest } = headers;
    const req = session.request({ ":method": method, ":path": path, ":authority": host ?? address, ...rest });
    let status = 0;
    let answerHeaders: http.IncomingHttpHeaders = {};
    let text = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      status = Number(h[":status"]);
      answerHeaders = h as http.IncomingHttpHeaders;
    });
    req.on("data", (d: string) => (text += d));
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve({ status, headers: answerHeaders, body: text });
    });
    req.end(body);
  });
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const putBody = (key: string) => JSON.stringify({ key: b64(key), value: b64("x") });
const EVIL = "https://evil.example";

describe("a page of another site", () => {
  const f = useProxy(1);
  /** How many keys etcd holds under `prefix`, asked of etcd itself. */
  const keysUnder = async (prefix: string) =>
    (await ctl(f.etcd.members[0]!.endpoint, ["get", prefix, "--prefix", "--keys-only"])).split("\n").filter(Boolean)
      .length;

  for (const h2 of [false, true]) {
    const over = h2 ? "HTTP/2" : "HTTP/1.1";
    it(`cannot write through the gateway with a simple request (${over}): text/plain, form, multipart, no type`, async () => {
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]) {
        const headers: Record<string, string> = { origin: EVIL };
        if (type) headers["content-type"] = type;
        for (const path of ["/v3/kv/put", "/v3beta/kv/put"]) {
          const r = await send(f.proxy.address, { path, headers, body: putBody(`csrf/${type}`), h2 });
          assert.equal(r.status, 403, `${path} ${type}: ${r.body}`);
          assert.match(r.body, /--cors-allowed-origins/);
        }
      }
      assert.equal(await keysUnder("csrf/"), 0);
    });

    it(`cannot take the cluster over: user add, role grant, auth enable (${over})`, async () => {
      const steps: Array<[string, object]> = [
        ["/v3/auth/user/add", { name: "root", password: "attacker" }],
        ["/v3/auth/user/grant", { user: "root", role: "root" }],
        ["/v3/auth/enable", {}],
      ];
      for (const [path, message] of steps) {
        const r = await send(f.proxy.address, {
          path,
          headers: { origin: "null", "content-type": "text/plain" },
          body: JSON.stringify(message),
          h2,
        });
        assert.equal(r.status, 403, path);
      }
      const users = await ctl(f.etcd.members[0]!.endpoint, ["user", "list"]);
      assert.equal(users.trim(), "", "no user was added");
      assert.equal(await ctl(f.proxy.address, ["put", "still/open", "1"]), "OK\n", "auth is still off");
    });

    it(`is refused on Connect, gRPC-Web and ProxyService too, and on GETs it sends without an Origin (${over})`, async () => {
      const connect = await send(f.proxy.address, {
        path: "/etcdserverpb.KV/Put",
        headers: { origin: EVIL, "content-type": "application/json" },
        body: putBody("csrf/connect"),
        h2,
      });
      assert.equal(connect.status, 403);
      const web = await send(f.proxy.address, {
        path: "/etcdserverpb.KV/Range",
        headers: { origin: "http://127.0.0.1:1", "content-type": "application/grpc-web+proto" },
        body: envelope(Buffer.alloc(0)),
        h2,
      });
      assert.equal(web.status, 403, "another port of the same host is another origin");
      const status = await send(f.proxy.address, {
        path: "/etcdproxy.v1.ProxyService/Status",
        headers: { origin: EVIL, "content-type": "application/json" },
        body: "{}",
        h2,
      });
      assert.equal(status.status, 403);
      // An <img> or a link: a GET with no Origin, which the browser marks as cross-site.
      for (const fetchSite of ["cross-site", "same-site"]) {
        const get = await send(f.proxy.address, {
          method: "GET",
          path: `/etcdserverpb.KV/Range?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ key: b64("k") }))}`,
          headers: { "sec-fetch-site": fetchSite, "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image" },
          h2,
        });
        assert.equal(get.status, 403, fetchSite);
      }
      for (const path of ["/metrics", "/proxy/metrics", "/health", "/version"]) {
        const r = await send(f.proxy.address, { method: "GET", path, headers: { "sec-fetch-site": "cross-site" }, h2 });
        assert.equal(r.status, 403, path);
      }
      assert.equal(await keysUnder("csrf/"), 0);
    });

    it(`may still link to the dashboard, whose files any page may load (${over})`, async () => {
      const page = await send(f.proxy.address, {
        method: "GET",
        path: "/",
        headers: { "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" },
        h2,
      });
      assert.equal(page.status, 200);
      const script = /<script[^>]+src="\.?\/?([^"]+)"/.exec(page.body)?.[1];
      assert.ok(script, "the page loads a script");
      const asset = await send(f.proxy.address, {
        method: "GET",
        path: `/${script}`,
        headers: { "sec-fetch-site": "cross-site", origin: EVIL },
        h2,
      });
      assert.equal(asset.status, 200);
      const post = await send(f.proxy.address, { path: "/", headers: { origin: EVIL }, h2 });
      assert.equal(post.status, 403, "only GET and HEAD of the dashboard's files");
    });
  }

  it("the dashboard comes locked down: CSP, no sniffing, no framing, no referrer, on the page and its files", async () => {
    const page = await send(f.proxy.address, { method: "GET", path: "/" });
    const again = await send(f.proxy.address, { method: "GET", path: "/index.html" });
    const script = /<script[^>]+src="\.?\/?([^"]+)"/.exec(page.body)![1]!;
    const asset = await send(f.proxy.address, { method: "GET", path: `/${script}` });
    for (const r of [page, again, asset]) {
      assert.equal(r.status, 200);
      const csp = String(r.headers["content-security-policy"]);
      for (const directive of [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
      ]) {
        assert.ok(csp.includes(directive), `${directive} in ${csp}`);
      }
      assert.ok(!csp.includes("unsafe"), csp);
      assert.equal(r.headers["x-content-type-options"], "nosniff");
      assert.equal(r.headers["x-frame-options"], "DENY");
      assert.equal(r.headers["referrer-policy"], "no-referrer");
    }
    // The editor's <style> elements are admitted by a nonce that is new with every page.
    const nonce = (r: Answer) => /'nonce-([^']+)'/.exec(String(r.headers["content-security-policy"]))?.[1];
    assert.ok(nonce(page) && nonce(again) && nonce(page) !== nonce(again));
    assert.ok(page.body.includes(`<meta name="csp-nonce" content="${nonce(page)}" />`));
  });

  it("is answered before its body is read: a refused upload is not waited for", async () => {
    // A body that never ends: only an answer given from the headers alone can come back.
    const [host, port] = f.proxy.address.split(":") as [string, string];
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host,
          port: Number(port),
          method: "POST",
          path: "/v3/kv/put",
          headers: { origin: EVIL, "content-type": "text/plain", "content-length": "1000000" },
        },
        (res) => {
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on("error", reject);
      req.write("{");
    });
    assert.equal(status, 403);
  });
});

describe("clients that are not browsers, and pages the proxy allows", () => {
  const dashboard = "http://dash.example:8080";
  const f = useProxy(1, { proxyArgs: [`--cors-allowed-origins=${dashboard}`] });

  it("curl-like clients (no Origin) write through the gateway, whatever the body's type", async () => {
    for (const type of ["application/x-www-form-urlencoded", "application/json"]) {
      const r = await send(f.proxy.address, {
        path: "/v3/kv/put",
        headers: { "content-type": type },
        body: putBody(`curl/${type}`),
      });
      assert.equal(r.status, 200, r.body);
    }
  });

  it("the proxy's own pages, and an allowed origin, call with JSON; a simple body is refused even then", async () => {
    for (const origin of [`http://${f.proxy.address}`, dashboard]) {
      const r = await send(f.proxy.address, {
        path: "/v3/kv/put",
        headers: { origin, "content-type": "application/json", "sec-fetch-site": "cross-site" },
        body: putBody("allowed/json"),
      });
      assert.equal(r.status, 200, `${origin}: ${r.body}`);
      const simple = await send(f.proxy.address, {
        path: "/v3/kv/put",
        headers: { origin, "content-type": "text/plain" },
        body: putBody("allowed/text"),
      });
      assert.equal(simple.status, 415, origin);
      assert.match(simple.body, /application\/json/);
    }
    const connect = await send(f.proxy.address, {
      path: "/etcdserverpb.KV/Range",
      headers: { origin: dashboard, "content-type": "application/json" },
      body: JSON.stringify({ key: b64("allowed/json") }),
    });
    assert.equal(connect.status, 200);
    assert.equal(connect.headers["access-control-allow-origin"], dashboard);
  });

  it("GET serves cheap reads only: Range yes, Hash and HashKV answer 405", async () => {
    const get = (path: string) =>
      send(f.proxy.address, { method: "GET", path: `${path}?connect=v1&encoding=json&message=%7B%7D` });
    assert.equal((await get("/etcdserverpb.Maintenance/Status")).status, 200);
    for (const path of ["/etcdserverpb.Maintenance/Hash", "/etcdserverpb.Maintenance/HashKV"]) {
      const r = await get(path);
      assert.equal(r.status, 405, path);
    }
    const hash = await send(f.proxy.address, {
      path: "/etcdserverpb.Maintenance/HashKV",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(hash.status, 200, "POST still works");
  });
});

describe("the Host check against DNS rebinding", () => {
  const f = useProxy(1);
  const port = () => f.proxy.address.split(":")[1]!;

  for (const h2 of [false, true]) {
    const over = h2 ? "HTTP/2" : "HTTP/1.1";
    it(`a rebound name gets etcd's 421 on every path (${over})`, async () => {
      const host = `attacker.example:${port()}`;
      const tries: Sent[] = [
        { method: "GET", path: "/" },
        {
          path: "/v3/kv/range",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ key: b64("a") }),
        },
        { path: "/etcdserverpb.KV/Range", headers: { "content-type": "application/json" }, body: "{}" },
        {
          path: "/etcdserverpb.KV/Range",
          headers: { "content-type": "application/grpc-web+proto" },
          body: envelope(Buffer.alloc(0)),
        },
        { method: "GET", path: "/metrics" },
        { method: "GET", path: "/health" },
      ];
      for (const t of tries) {
        const r = await send(f.proxy.address, { ...t, headers: { ...t.headers, host }, h2 });
        assert.equal(r.status, 421, `${t.path}: ${r.body}`);
        assert.match(r.body, /^\netcd received your request, but the Host header was unrecognized\.\n/);
        assert.match(r.body, /--host-whitelist "attacker\.example"/);
        assert.match(r.body, /CVE-2018-5702/);
      }
    });

    it(`the proxy's own names pass: localhost, IP addresses, and case or a final dot do not matter (${over})`, async () => {
      for (const host of [
        `localhost:${port()}`,
        `LOCALHOST.:${port()}`,
        `127.0.0.1:${port()}`,
        `[::1]:${port()}`,
        `10.1.2.3`,
      ]) {
        const r = await send(f.proxy.address, { method: "GET", path: "/livez", headers: { host }, h2 });
        assert.equal(r.status, 200, host);
      }
    });
  }

  it("native gRPC is checked too, and a client's :authority that no browser could send is served", async () => {
    const request = envelope(Buffer.alloc(0));
    const refused = await rawGrpc(f.proxy.address, "/etcdserverpb.Maintenance/Status", request, {
      ":authority": `attacker.example:${port()}`,
    });
    assert.equal(refused.status, 421);
    // etcd's Go client 3.5.0 sent its resolver's target here.
    const odd = rawGrpc(f.proxy.address, "/etcdserverpb.Maintenance/Status", request, {
      ":authority": `#initially=[${f.proxy.address}]`,
    });
    if (process.env.PROXY_LANE === "connect") {
      // node's HTTP/2 (nghttp2), which serves this lane, refuses such an :authority itself.
      await assert.rejects(odd, /NGHTTP2_PROTOCOL_ERROR/);
    } else {
      assert.equal((await odd).status, 200);
      assert.equal((await odd).grpcStatus, 0);
    }
  });

  it("etcdctl, grpc-js and the etcd3 package reach the proxy by name", async () => {
    const byName = `localhost:${port()}`;
    assert.equal(await ctl(byName, ["put", "named/ctl", "1"]), "OK\n");
    const grpc = new EtcdGrpcClient(byName);
    try {
      await grpc.unary("KV", "Put", { key: Buffer.from("named/grpc"), value: Buffer.from("2") });
    } finally {
      grpc.close();
    }
    const etcd3 = new Etcd3({ hosts: `http://${byName}` });
    try {
      await etcd3.put("named/etcd3").value("3");
      assert.deepEqual(await etcd3.getAll().prefix("named/").strings(), {
        "named/ctl": "1",
        "named/etcd3": "3",
        "named/grpc": "2",
      });
    } finally {
      etcd3.close();
    }
  });
});

describe("--host-whitelist", () => {
  const listed = useProxy(1, { proxyArgs: ["--host-whitelist=etcd.corp.example,*.lb.example"] });
  const any = useProxy(1, { proxyArgs: ["--host-whitelist=*"] });

  it("names the hosts served, with etcd's meaning; a certificate-style wildcard covers one label", async () => {
    const status = async (host: string) =>
      (await send(listed.proxy.address, { method: "GET", path: "/livez", headers: { host } })).status;
    assert.equal(await status("etcd.corp.example"), 200);
    assert.equal(await status("a.lb.example:443"), 200);
    assert.equal(await status("a.b.lb.example"), 421);
    assert.equal(await status("localhost"), 421, "the list replaces the defaults");
    assert.equal(await status("127.0.0.1"), 200, "an IP address is never a rebound name");
  });

  it("* serves any host, as etcd's does", async () => {
    const r = await send(any.proxy.address, { method: "GET", path: "/livez", headers: { host: "anything.example" } });
    assert.equal(r.status, 200);
  });
});

describe("registration by name", () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  before(async () => {
    etcd = await startEtcd(1);
    const port = await freePort();
    // Advertised by name, as an operator behind DNS would.
    proxy = await startTestProxy(etcd.endpoints, [
      "--resolver-prefix=___grpc_proxy_endpoint",
      "--resolver-ttl=30",
      `--advertise-client-url=localhost:${port}`,
      `--listen-addr=127.0.0.1:${port}`,
    ]);
  });
  after(async () => {
    await proxy?.close();
    await etcd?.stop();
  });

  it("MemberList hands out the advertised name, and a client dialling it is served", async () => {
    const deadline = Date.now() + 10_000;
    let members = await ctl(proxy.address, ["member", "list"]);
    while (!members.includes("localhost:") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      members = await ctl(proxy.address, ["member", "list"]);
    }
    const url = /(localhost:\d+)/.exec(members)?.[1];
    assert.ok(url, `the registered URL is listed: ${members}`);
    assert.equal(await ctl(url, ["put", "registered/by-name", "1"]), "OK\n");
  });
});
