// --discovery-srv: the proxy finds etcd's client endpoints in DNS SRV records,
// as etcd's proxy does (`_etcd-client-ssl._tcp` for https, `_etcd-client._tcp`
// for http, `-<name>` with --discovery-srv-name), served here by a real DNS
// server (dnsmasq) on loopback. Unlike etcd's proxy it follows the records
// while it runs.
//
// Lane-independent: npm test runs it in the fast lane only, since
// discovery is upstream's.
import assert from "node:assert/strict";
import dns from "node:dns";
import { after, before, describe, it } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { startDns, type TestDns } from "../helpers/dns.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";
import { eventually } from "../helpers/watch.js";

const port = (endpoint: string) => Number(endpoint.split(":").pop());

describe(`--discovery-srv (etcd ${ETCD_VERSION})`, () => {
  let etcd: EtcdCluster;
  let server: TestDns;
  const proxies: RunningProxy[] = [];
  before(async () => {
    etcd = await startEtcd(3);
    server = await startDns(
      etcd.members
        .map((m) => ["_etcd-client._tcp.srv.test", "localhost", port(m.endpoint)] as const)
        .map((r) => [...r]),
    );
    // The proxy runs in this process: it asks this process's resolver, as etcd asks the system's.
    dns.setServers([server.address]);
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await server?.stop();
    await etcd?.stop();
  });

  const endpointsOf = (proxy: RunningProxy) =>
    proxy.upstream
      .endpoints()
      .map((e) => e.url)
      .sort();
  const local = (members: EtcdCluster["members"]) => members.map((m) => `http://localhost:${port(m.endpoint)}`).sort();

  it("takes the records' endpoints (--insecure-discovery for http ones), serves through them, and follows the records", async () => {
    const proxy = await startTestProxy("127.0.0.1:1", ["--discovery-srv=srv.test", "--insecure-discovery"]);
    proxies.push(proxy);
    assert.deepEqual(endpointsOf(proxy), local(etcd.members));
    const client = new EtcdGrpcClient(proxy.address);
    try {
      await client.unary("KV", "Put", { key: Buffer.from("srv"), value: Buffer.from("found") });
      const read = (await client.unary("KV", "Range", { key: Buffer.from("srv") })) as any;
      assert.equal(read.kvs[0].value.toString(), "found");
      // The records change: one member left.
      await server.serve([["_etcd-client._tcp.srv.test", "localhost", port(etcd.members[1]!.endpoint)]]);
      await eventually(
        () => endpointsOf(proxy).join() === local([etcd.members[1]!]).join(),
        "the endpoints to follow",
        15_000,
      );
      assert.equal(
        ((await client.unary("KV", "Range", { key: Buffer.from("srv") })) as any).kvs[0].value.toString(),
        "found",
      );
    } finally {
      client.close();
      await server.serve(etcd.members.map((m) => ["_etcd-client._tcp.srv.test", "localhost", port(m.endpoint)]));
    }
  });

  it("--discovery-srv-name picks the named services", async () => {
    await server.serve([["_etcd-client-blue._tcp.srv.test", "localhost", port(etcd.members[2]!.endpoint)]]);
    try {
      const proxy = await startTestProxy("127.0.0.1:1", [
        "--discovery-srv=srv.test",
        "--discovery-srv-name=blue",
        "--insecure-discovery",
      ]);
      proxies.push(proxy);
      assert.deepEqual(endpointsOf(proxy), local([etcd.members[2]!]));
    } finally {
      await server.serve(etcd.members.map((m) => ["_etcd-client._tcp.srv.test", "localhost", port(m.endpoint)]));
    }
  });

  it("without records, the proxy does not start, and says why", async () => {
    await assert.rejects(
      startTestProxy("127.0.0.1:1", ["--discovery-srv=missing.test"]),
      /dns lookup errors: .*_etcd-client-ssl\._tcp\.missing\.test.* and .*_etcd-client\._tcp\.missing\.test/,
    );
  });
});

describe(`--discovery-srv over TLS (etcd ${ETCD_VERSION})`, () => {
  let pki: TestPki;
  let secure: EtcdCluster;
  let plain: EtcdCluster;
  let server: TestDns;
  const proxies: RunningProxy[] = [];
  before(async () => {
    pki = makePki();
    secure = await startEtcd(1, { ca: pki.ca, server: pki.server, client: pki.client });
    plain = await startEtcd(1);
    server = await startDns([
      ["_etcd-client-ssl._tcp.srv.test", "localhost", port(secure.members[0]!.endpoint)],
      ["_etcd-client._tcp.srv.test", "localhost", port(plain.members[0]!.endpoint)],
      ["_etcd-client-ssl._tcp.other.test", "localhost", port(secure.members[0]!.endpoint)],
    ]);
    dns.setServers([server.address]);
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await server?.stop();
    await secure?.stop();
    await plain?.stop();
    pki?.remove();
  });

  const tlsFlags = () => [`--cacert=${pki.ca}`, `--cert=${pki.client.cert}`, `--key=${pki.client.key}`];

  it("keeps only https endpoints whose certificate is valid for the domain, as etcd validates them", async () => {
    const proxy = await startTestProxy("127.0.0.1:1", ["--discovery-srv=srv.test", ...tlsFlags()]);
    proxies.push(proxy);
    assert.deepEqual(
      proxy.upstream.endpoints().map((e) => e.url),
      [`https://localhost:${port(secure.members[0]!.endpoint)}`],
    );
    const client = new EtcdGrpcClient(proxy.address);
    try {
      await client.unary("KV", "Put", { key: Buffer.from("tls"), value: Buffer.from("ok") });
    } finally {
      client.close();
    }
  });

  it("drops an endpoint whose certificate does not name the domain, unless --insecure-discovery", async () => {
    // Nothing validates: the proxy falls back on --endpoints, as etcd's does.
    const strict = await startTestProxy(plain.members[0]!.clientUrl, ["--discovery-srv=other.test", ...tlsFlags()]);
    proxies.push(strict);
    assert.deepEqual(
      strict.upstream.endpoints().map((e) => e.url),
      [plain.members[0]!.clientUrl],
    );
    const lax = await startTestProxy(plain.members[0]!.clientUrl, [
      "--discovery-srv=other.test",
      "--insecure-discovery",
      ...tlsFlags(),
    ]);
    proxies.push(lax);
    assert.deepEqual(
      lax.upstream.endpoints().map((e) => e.url),
      [`https://localhost:${port(secure.members[0]!.endpoint)}`],
    );
  });
});
