// --enable-pprof: /debug/pprof/ on the client port and on --metrics-addr, as
// etcd serves it, with CPU and heap profiles of the running proxy in pprof's
// format (gzipped protobuf), parsed here with pprof-format.
//
// Lane-independent: npm test runs it in the fast lane only, since
// profiles are served the same way in both lanes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";
import { startCli } from "../helpers/cli.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { freePort } from "../helpers/ports.js";

function parse(body: ArrayBuffer): Profile {
  return Profile.decode(gunzipSync(Buffer.from(body)));
}

describe("--enable-pprof", () => {
  let etcd: EtcdCluster;
  let proxy: Awaited<ReturnType<typeof startCli>>;
  let plain: Awaited<ReturnType<typeof startCli>>;
  let metricsAddr: string;
  before(async () => {
    etcd = await startEtcd(1);
    metricsAddr = `127.0.0.1:${await freePort()}`;
    proxy = await startCli(etcd.endpoints, ["--enable-pprof", `--metrics-addr=http://${metricsAddr}`]);
    plain = await startCli(etcd.endpoints);
  });
  after(async () => {
    proxy?.child.kill("SIGKILL");
    plain?.child.kill("SIGKILL");
    await etcd?.stop();
  });

  it("a 2-second CPU profile of the proxy at work, which pprof's format parses", async () => {
    const client = new EtcdGrpcClient(proxy.address);
    let running = true;
    const load = (async () => {
      while (running) await client.unary("KV", "Put", { key: Buffer.from("pprof"), value: Buffer.from("v") });
    })();
    try {
      const res = await fetch(`http://${proxy.address}/debug/pprof/profile?seconds=2`);
      assert.equal(res.status, 200);
      const profile = parse(await res.arrayBuffer());
      const strings = profile.stringTable.strings;
      assert.ok(profile.sample.length > 0, "samples");
      assert.ok(
        profile.sampleType.some((t) => strings[Number(t.type)] === "wall"),
        "wall-time samples",
      );
      assert.ok(
        profile.function.some((f) => strings[Number(f.filename)]!.includes("/dist/")),
        "the proxy's own code is in the profile",
      );
    } finally {
      running = false;
      await load;
      client.close();
    }
  });

  it("a heap profile, on the client port and on --metrics-addr", async () => {
    for (const address of [proxy.address, metricsAddr]) {
      const res = await fetch(`http://${address}/debug/pprof/heap`);
      assert.equal(res.status, 200, address);
      const profile = parse(await res.arrayBuffer());
      const strings = profile.stringTable.strings;
      assert.deepEqual(
        profile.sampleType.map((t) => strings[Number(t.type)]),
        ["inuse_objects", "inuse_space"],
      );
      assert.ok(profile.sample.length > 0, `${address}: sampled allocations`);
    }
    assert.match(await (await fetch(`http://${metricsAddr}/debug/pprof/`)).text(), /profile/);
  });

  it("answers Go's runtime-only profiles 404, and nothing at all without the flag", async () => {
    assert.equal((await fetch(`http://${proxy.address}/debug/pprof/goroutine`)).status, 404);
    assert.equal((await fetch(`http://${proxy.address}/debug/pprof/profile?seconds=0`)).status, 400);
    assert.equal((await fetch(`http://${plain.address}/debug/pprof/`)).status, 404);
    assert.equal((await fetch(`http://${plain.address}/debug/pprof/heap`)).status, 404);
  });

  it("shows the command line with its passwords hidden", async () => {
    const secret = await startCli(etcd.endpoints, ["--enable-pprof", "--user=root", "--password=hunter2-secret"]);
    try {
      const shown = (await (await fetch(`http://${secret.address}/debug/pprof/cmdline`)).text()).split("\0");
      assert.ok(shown.includes("--password=[redacted]"), shown.join(" "));
      assert.ok(shown.includes("--user=root"));
      assert.ok(!shown.join(" ").includes("hunter2"));
    } finally {
      secret.child.kill("SIGKILL");
    }
  });
});
