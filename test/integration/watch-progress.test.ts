// Progress requests never change what any watcher receives (issue 22): etcd
// answers one with its current revision even while it still catches up a
// watcher created from the past, and that watcher's older events must still
// arrive, through the proxy as they do direct. Real etcd, real etcdctl.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { before, describe, it } from "node:test";
import { useProxy } from "../helpers/fixture.js";
import { spawnCtl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `etcdctl watch -i`, fed `commands` one by one with pauses, as the issue's
 * shell loop does; resolves with how many PUT events it printed.
 */
function interactiveWatch(endpoint: string, script: Array<string | number>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoint}`, "watch", "-i"],
      { env: { ...process.env, ETCDCTL_API: "3" }, maxBuffer: 64 << 20 },
      (err, stdout) => {
        if (err && !child.killed) return reject(err);
        resolve(stdout.split("\n").filter((l) => l === "PUT").length);
      },
    );
    void (async () => {
      for (const step of script) {
        if (typeof step === "number") await sleep(step);
        else child.stdin!.write(`${step}\n`);
      }
      child.kill("SIGTERM");
    })();
  });
}

describe("progress requests and watchers catching up (issue 22)", () => {
  const f = useProxy(1);
  const puts = 200;
  let firstRev = 0;

  before(async () => {
    for (let i = 0; i < puts; i++) {
      const r = (await f.client.unary("KV", "Put", { key: Buffer.from("/w/g0/k0"), value: Buffer.from(`v${i}`) })) as {
        header: { revision: string };
      };
      if (i === 0) firstRev = Number(r.header.revision);
    }
  });

  it("a progress request on the same stream, right after a watch from the past, loses none of its events", async () => {
    const script = [`watch --rev=${firstRev} --prefix /w/g0/k0`, 50, "progress", 3_000];
    const direct = await interactiveWatch(f.etcd.members[0]!.endpoint, script);
    const proxied = await interactiveWatch(f.proxy.address, script);
    assert.equal(direct, puts, "etcd itself");
    assert.equal(proxied, puts, "through the proxy");
  });

  it("another client's progress requests every 50 ms do not take events from a watcher catching up", async () => {
    // One client watches an unrelated key and asks for progress again and again, on its own stream.
    const nagger = new EtcdGrpcClient(f.proxy.address);
    // With `hasleader`, as etcdctl watches: the proxy then shares one upstream stream between both clients.
    const metadata = new grpc.Metadata();
    metadata.set("hasleader", "true");
    const call = nagger.client("Watch").makeBidiStreamRequest(
      "/etcdserverpb.Watch/Watch",
      (m: Buffer) => m,
      (b: Buffer) => b,
      metadata,
    );
    call.on("error", () => {});
    call.on("data", () => {});
    // WatchRequest{create_request{key:"/unrelated"}} and WatchRequest{progress_request{}}, hand-encoded.
    const key = Buffer.from("/unrelated");
    call.write(Buffer.concat([Buffer.from([0x0a, key.length + 2, 0x0a, key.length]), key]));
    const progress = Buffer.from([0x1a, 0x00]);
    const timer = setInterval(() => call.write(progress), 50);
    try {
      const watcher = spawnCtl(f.proxy.address, ["watch", `--rev=${firstRev}`, "--prefix", "/w/g0/k0"]);
      try {
        const seen = () =>
          watcher
            .output()
            .split("\n")
            .filter((l) => l === "PUT").length;
        for (let waited = 0; seen() < puts && waited < 10_000; waited += 100) await sleep(100);
        await sleep(500); // nothing more, nothing twice
        assert.equal(seen(), puts);
      } finally {
        await watcher.kill();
      }
    } finally {
      clearInterval(timer);
      call.cancel();
      nagger.close();
    }
  });
});
