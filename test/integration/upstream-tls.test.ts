// TLS toward etcd: an etcd that requires client certificates, reached with
// --cert/--key/--cacert, https:// endpoints or bare ones plus TLS flags, and
// etcd's rule that the proxy's client certificate carries no Common Name.
//
// Lane-independent: npm test runs it in the fast lane only, since
// TLS toward etcd is upstream's.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { buildConfig } from "../../src/config/config.js";
import type { RunningProxy } from "../../src/main.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl, spawnCtl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient, outcome } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";

describe("TLS toward etcd", () => {
  let pki: TestPki;
  let etcd: EtcdCluster;
  const running: RunningProxy[] = [];

  before(async () => {
    pki = makePki();
    etcd = await startEtcd(1, { ca: pki.ca, server: pki.server, client: pki.client });
  });

  after(async () => {
    for (const p of running) await p.close();
    await etcd?.stop();
    pki?.remove();
  });

  const start = async (endpoints: string, args: string[]) => {
    const proxy = await startTestProxy(endpoints, args);
    running.push(proxy);
    return proxy;
  };
  const clientCert = () => [`--cert=${pki.client.cert}`, `--key=${pki.client.key}`];

  it("https:// endpoints with --cacert, --cert and --key: etcdctl works through the proxy", async () => {
    const proxy = await start(`https://${etcd.endpoints}`, [`--cacert=${pki.ca}`, ...clientCert()]);
    assert.equal(await ctl(proxy.address, ["put", "tls/k", "v1"]), "OK\n");
    assert.equal(await ctl(proxy.address, ["get", "tls/k", "--print-value-only"]), "v1\n");
    const watch = spawnCtl(proxy.address, ["watch", "tls/k"]);
    try {
      await new Promise((r) => setTimeout(r, 500));
      await ctl(proxy.address, ["put", "tls/k", "v2"]);
      await watch.waitFor("PUT\ntls/k\nv2\n");
    } finally {
      await watch.kill();
    }
  });

  it("a bare endpoint uses TLS when TLS flags are given, as clientv3 does", async () => {
    const proxy = await start(etcd.endpoints, [`--cacert=${pki.ca}`, ...clientCert()]);
    assert.equal(await ctl(proxy.address, ["get", "tls/k", "--print-value-only"]), "v2\n");
  });

  it("--insecure-skip-tls-verify connects without a CA bundle", async () => {
    const proxy = await start(etcd.endpoints, ["--insecure-skip-tls-verify", ...clientCert()]);
    assert.equal(await ctl(proxy.address, ["get", "tls/k", "--print-value-only"]), "v2\n");
  });

  it("an etcd certificate from an unknown CA is refused, and the proxy says why", async () => {
    const proxy = await start(etcd.endpoints, [`--cacert=${pki.otherCa}`, ...clientCert()]);
    const client = new EtcdGrpcClient(proxy.address);
    try {
      const r = await outcome(client.unary("KV", "Range", { key: Buffer.from("tls/k") }, undefined, 2000));
      assert.ok([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(r.code), JSON.stringify(r));
      // A check whose 1 s ran out before the handshake failed says only that; the next says why.
      let reason = "";
      for (let i = 0; i < 10 && !/certificate/i.test(reason); i++) {
        reason = ((await (await fetch(`http://${proxy.address}/health`)).json()) as { reason: string }).reason;
      }
      assert.match(reason, /certificate/i);
    } finally {
      client.close();
    }
  });

  it("a client certificate with a Common Name is refused at startup, as etcd refuses it", () => {
    assert.throws(
      () =>
        buildConfig([
          `--endpoints=${etcd.endpoints}`,
          `--cert=${pki.clientWithCn.cert}`,
          `--key=${pki.clientWithCn.key}`,
        ]),
      /--cert ".*" has a non-empty Common Name \(root\)/,
    );
    assert.throws(() => buildConfig([`--cert=${pki.client.cert}`]), /--cert and --key must be given together/);
  });
});
