// The proxy's own services for clients without bidi streams (browsers),
// over gRPC-Web and Connect, and its status for the dashboard.
//
// Lane-independent: npm test runs it in the fast lane only, since
// gRPC-Web and Connect are served the same way in both lanes.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { LeaseService, ProxyService, WatchService } from "../../src/gen/etcdproxy/v1/proxy_pb.js";
import { useProxy } from "../helpers/fixture.js";
import { etcdMetric, eventually } from "../helpers/watch.js";

const WATCHERS = "etcd_debugging_mvcc_watcher_total";

describe("services for browsers", () => {
  const f = useProxy(1);
  const transports = () => ({
    "gRPC-Web": createGrpcWebTransport({ baseUrl: `http://${f.proxy.address}`, httpVersion: "1.1" }),
    "Connect JSON": createConnectTransport({
      baseUrl: `http://${f.proxy.address}`,
      httpVersion: "1.1",
      useBinaryFormat: false,
    }),
  });

  for (const name of ["gRPC-Web", "Connect JSON"] as const) {
    it(`a server-streaming watch over ${name}: several ranges, etcd's answers, and closing releases etcd's watcher`, async () => {
      const clientUrl = f.etcd.members[0]!.clientUrl;
      await eventually(async () => (await etcdMetric(clientUrl, WATCHERS)) === 0, "no watchers yet");
      const client = createClient(WatchService, transports()[name]);
      const abort = new AbortController();
      const stream = client.watch(
        {
          watches: [
            { key: Buffer.from(`b/${name}/a`) },
            { key: Buffer.from(`b/${name}/p/`), rangeEnd: Buffer.from(`b/${name}/p0`), prevKv: true },
          ],
        },
        { signal: abort.signal },
      );
      const it = stream[Symbol.asyncIterator]();
      const created = [(await it.next()).value, (await it.next()).value];
      assert.deepEqual(
        created.map((r) => [r.watchId, r.created]),
        [
          [0n, true],
          [1n, true],
        ],
      );
      assert.equal(await etcdMetric(clientUrl, WATCHERS), 2);

      await f.direct.unary("KV", "Put", { key: Buffer.from(`b/${name}/p/x`), value: Buffer.from("1") });
      await f.direct.unary("KV", "Put", { key: Buffer.from(`b/${name}/a`), value: Buffer.from("2") });
      const e1 = (await it.next()).value;
      const e2 = (await it.next()).value;
      assert.deepEqual(
        [e1, e2].map((r) => [
          r.watchId,
          Buffer.from(r.events[0].kv.key).toString(),
          Buffer.from(r.events[0].kv.value).toString(),
        ]),
        [
          [1n, `b/${name}/p/x`, "1"],
          [0n, `b/${name}/a`, "2"],
        ],
      );
      abort.abort();
      await it.return?.();
      await eventually(
        async () => (await etcdMetric(clientUrl, WATCHERS)) === 0,
        "the upstream watchers to be released",
      );
    });
  }

  it("keep-alive once renews a lease and answers as etcd does", async () => {
    const client = createClient(LeaseService, transports()["Connect JSON"]);
    const lease = (await f.direct.unary("Lease", "LeaseGrant", { TTL: 30 })) as { ID: string };
    const r = await client.keepAliveOnce({ ID: BigInt(lease.ID) });
    assert.equal(r.ID, BigInt(lease.ID));
    assert.equal(r.TTL, 30n);
    const unknown = await client.keepAliveOnce({ ID: 12345n });
    assert.equal(unknown.TTL, 0n);
  });

  it("status: endpoints, watch, cache and lease figures", async () => {
    const client = createClient(ProxyService, transports()["gRPC-Web"]);
    const status = await client.status({});
    assert.match(status.version, /^\d+\.\d+\.\d+$/);
    assert.deepEqual(
      status.endpoints.map((e) => [e.url, e.healthy]),
      [[f.etcd.members[0]!.clientUrl, true]],
    );
    assert.equal(status.cache?.enabled, true);
    assert.ok(status.watch !== undefined);
  });

  it("endpoint status: each member's Status, and its quota read from the member's /metrics", async () => {
    const client = createClient(ProxyService, transports()["Connect JSON"]);
    const { endpoints } = await client.endpointStatus({});
    assert.equal(endpoints.length, 1);
    assert.equal(endpoints[0]!.url, f.etcd.members[0]!.clientUrl);
    assert.equal(endpoints[0]!.error, "");
    assert.ok(endpoints[0]!.status!.raftIndex > 0n);
    assert.equal(endpoints[0]!.quotaBytes, 2n * 1024n * 1024n * 1024n, "etcd's default quota, 2 GiB");
  });

  it("defragments one named endpoint, and refuses a URL that is not among --endpoints", async () => {
    const client = createClient(ProxyService, transports()["gRPC-Web"]);
    const member = f.etcd.members[0]!;
    const defragmentsLogged = () => (readFileSync(member.logFile, "utf8").match(/finished defragment/g) ?? []).length;
    const before = defragmentsLogged();
    await client.defragmentEndpoint({ url: member.clientUrl });
    assert.ok(defragmentsLogged() > before, "the member's log says it defragmented");
    const elsewhere = await client.defragmentEndpoint({ url: "http://169.254.169.254:2379" }).then(
      () => undefined,
      (err: ConnectError) => err,
    );
    assert.equal(elsewhere?.code, Code.NotFound);
    assert.equal(elsewhere?.rawMessage, "no endpoint http://169.254.169.254:2379 among --endpoints");
  });

  it("status answers curl with Connect JSON over GET", async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        "curl",
        ["-s", `http://${f.proxy.address}/etcdproxy.v1.ProxyService/Status?encoding=json&message=%7B%7D`],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    const status = JSON.parse(out) as {
      endpoints: Array<{ url: string; healthy: boolean }>;
      cache: { enabled: boolean };
    };
    assert.equal(status.endpoints[0]!.healthy, true);
    assert.equal(status.cache.enabled, true);
  });
});

describe("CORS", () => {
  const dashboard = "http://dash.example:8080";
  const f = useProxy(1, { proxyArgs: [`--cors-allowed-origins=${dashboard}`] });
  const plain = useProxy(1);
  const preflight = (address: string, origin: string) =>
    fetch(`http://${address}/etcdproxy.v1.ProxyService/Status`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,token",
      },
    });

  it("--cors-allowed-origins lets a dashboard elsewhere call, with Connect's headers and etcd's token", async () => {
    const r = await preflight(f.proxy.address, dashboard);
    assert.equal(r.status, 204);
    assert.equal(r.headers.get("access-control-allow-origin"), dashboard);
    const allowed = r.headers.get("access-control-allow-headers") ?? "";
    for (const h of ["content-type", "connect-protocol-version", "token"])
      assert.match(allowed.toLowerCase(), new RegExp(h));
    const other = await preflight(f.proxy.address, "http://evil.example");
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  });

  it("by default only the proxy's own origin may call from a browser", async () => {
    const r = await fetch(`http://${plain.proxy.address}/etcdproxy.v1.ProxyService/Status`, {
      method: "POST",
      headers: { origin: dashboard, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(r.headers.get("access-control-allow-origin"), null);
  });
});
