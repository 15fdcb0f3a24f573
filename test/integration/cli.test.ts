// The command line as an operator meets it: the built binary, real flags,
// one clear line for bad input, and a clean exit on SIGTERM.
//
// Lane-independent: npm test runs it in the fast lane only, since
// it runs the built binary with its default lane.
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { connect } from "node:net";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { startCli, waitUntil } from "../helpers/cli.js";
import { PROXY_BIN as bin } from "../helpers/repo.js";

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe("etcd-connect-proxy command line", () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(1);
  });
  after(async () => {
    await etcd?.stop();
  });

  it("--version and --help", async () => {
    const v = await cli(["--version"]);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^etcd-connect-proxy \d+\.\d+\.\d+\n$/);
    const h = await cli(["start", "--help"]);
    assert.equal(h.code, 0);
    assert.match(
      h.stdout,
      /--endpoints strings\s+comma separated etcd cluster endpoints \(default "127\.0\.0\.1:2379"\)/,
    );
  });

  for (const [args, message] of [
    [
      ["start", "--max-send-bytes=abc"],
      /^etcd-connect-proxy: invalid value "abc" for --max-send-bytes: expected a non-negative integer\n$/,
    ],
    [["start", "--bogus"], /^etcd-connect-proxy: unknown flag: --bogus\n$/],
    [
      ["start", "--dial-keepalive-time=soon"],
      /^etcd-connect-proxy: invalid value for --dial-keepalive-time: invalid duration "soon"/,
    ],
    [["frobnicate"], /^etcd-connect-proxy: unknown command "frobnicate"/],
  ] as const) {
    it(`${args.join(" ")} fails with one clear line`, async () => {
      const r = await cli([...args]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1);
    });
  }

  it("start serves etcdctl, logs through pino, and exits 0 on SIGTERM", async () => {
    const proxy = await startCli(etcd.endpoints);
    try {
      const line = proxy.logLines().find((l) => l.msg === "started gRPC proxy")!;
      assert.equal(line.level, 30);
      assert.equal(line.listen, proxy.address);
      assert.equal(await ctl(proxy.address, ["put", "cli/k", "v"]), "OK\n");
      assert.equal(await ctl(proxy.address, ["get", "cli/k", "--print-value-only"]), "v\n");
    } finally {
      proxy.child.kill("SIGTERM");
    }
    assert.equal(await proxy.exited, 0);
  });

  it("SIGTERM with watches and keep-alives open: streams end UNAVAILABLE, the process exits 0", async () => {
    const proxy = await startCli(etcd.endpoints);
    const client = new EtcdGrpcClient(proxy.address);
    try {
      const statusOf = (call: ReturnType<EtcdGrpcClient["stream"]>) =>
        new Promise<{ code: number; details: string }>((resolve) => {
          call.on("error", () => {});
          call.on("status", (s) => resolve({ code: s.code, details: s.details }));
        });
      const watch = client.stream("Watch", "Watch");
      const created = new Promise((r) => watch.once("data", r));
      const watchEnded = statusOf(watch);
      watch.write({ create_request: { key: Buffer.from("term") } });
      await created;
      const lease = await client.unary("Lease", "LeaseGrant", { TTL: 60 });
      const keepAlive = client.stream("Lease", "LeaseKeepAlive");
      const answered = new Promise((r) => keepAlive.once("data", r));
      const keepAliveEnded = statusOf(keepAlive);
      keepAlive.write({ ID: lease.ID });
      await answered;

      proxy.child.kill("SIGTERM");
      const shuttingDown = { code: grpc.status.UNAVAILABLE, details: "etcd-connect-proxy is shutting down" };
      assert.deepEqual(await watchEnded, shuttingDown);
      assert.deepEqual(await keepAliveEnded, shuttingDown);
      assert.equal(await proxy.exited, 0);
    } finally {
      client.close();
      proxy.child.kill("SIGKILL");
    }
  });

  it("--debug logs one line per RPC: method, code, duration, upstream endpoint, and nothing else", async () => {
    const proxy = await startCli(etcd.endpoints, ["--debug"]);
    try {
      assert.equal(await ctl(proxy.address, ["put", "debug/k", "v"]), "OK\n");
      const putLine = () => proxy.logLines().find((l) => l.msg === "rpc" && l.method === "/etcdserverpb.KV/Put");
      await waitUntil(
        () => putLine() !== undefined,
        () => `no rpc line:\n${proxy.output()}`,
      );
      const line = putLine()!;
      assert.equal(line.level, 20);
      assert.equal(line.code, "OK");
      assert.equal(typeof line.ms, "number");
      assert.equal(line.upstream, `http://${etcd.endpoints}`);
      assert.deepEqual(Object.keys(line).sort(), [
        "code",
        "hostname",
        "level",
        "method",
        "ms",
        "msg",
        "pid",
        "time",
        "upstream",
      ]);
    } finally {
      proxy.child.kill("SIGKILL");
    }
  });

  it("SIGTERM with a silent client connected: the grace period closes it, the process exits 0", async () => {
    const proxy = await startCli(etcd.endpoints);
    const [host, port] = proxy.address.split(":");
    // Connected, but not a byte sent: neither HTTP server knows of it yet.
    const silent = connect(Number(port), host!);
    try {
      await new Promise((r) => silent.once("connect", r));
      const closed = new Promise((r) => silent.once("close", r));
      silent.on("error", () => {});
      proxy.child.kill("SIGTERM");
      assert.equal(await proxy.exited, 0);
      await closed;
    } finally {
      silent.destroy();
      proxy.child.kill("SIGKILL");
    }
  });
});

/** The built binary, started on a free port; resolves once it logged "started gRPC proxy". */
