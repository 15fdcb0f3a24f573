// --experimental-enable-grpc-logging: every request and response payload in
// the proxy's structured log, as etcd's proxy logs them, with passwords and
// tokens redacted (etcd's logs them as they are).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startCli } from "../helpers/cli.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient, login } from "../helpers/grpc-client.js";
import { WatchStream, eventually, revisions } from "../helpers/watch.js";

const SECRET = "s3cret-pw-4711";

describe(`--experimental-enable-grpc-logging (etcd ${ETCD_VERSION})`, () => {
  let etcd: EtcdCluster;
  let proxy: Awaited<ReturnType<typeof startCli>>;
  let client: EtcdGrpcClient;
  before(async () => {
    etcd = await startEtcd(1);
    proxy = await startCli(etcd.endpoints, ["--experimental-enable-grpc-logging"]);
    client = new EtcdGrpcClient(proxy.address);
  });
  after(async () => {
    client?.close();
    proxy?.child.kill("SIGKILL");
    await etcd?.stop();
  });

  const payloadLines = () => proxy.logLines().filter((l) => typeof l.msg === "string" && l.msg.includes("payload"));

  it("logs a unary call's request and response, method and payload, as etcd's proxy does", async () => {
    await client.unary("KV", "Put", { key: Buffer.from("logged"), value: Buffer.from("v1") });
    const puts = () => payloadLines().filter((l) => l["grpc.method"] === "Put");
    await eventually(() => puts().length === 2, "the Put's two lines");
    const lines = puts();
    const [request, response] = lines;
    assert.equal(request!.msg, "received payload logged as grpc.request.content field");
    assert.equal(request!["grpc.service"], "etcdserverpb.KV");
    assert.deepEqual(JSON.parse(request!["grpc.request.content"] as string), {
      key: Buffer.from("logged").toString("base64"),
      value: Buffer.from("v1").toString("base64"),
    });
    assert.equal(response!.msg, "returned response payload logged as grpc.response.content field");
    assert.ok(JSON.parse(response!["grpc.response.content"] as string).header.revision);
    assert.equal(request!.level, 30, "info level");
  });

  it("logs each message of a stream, both ways, and an error as the response's error", async () => {
    const watch = new WatchStream(client);
    try {
      watch.create({ key: "logged" });
      await watch.next();
      await client.unary("KV", "Put", { key: Buffer.from("logged"), value: Buffer.from("v2") });
      const got = await watch.until((r) => revisions(r).length > 0);
      assert.equal(revisions(got).length, 1);
    } finally {
      watch.close();
    }
    // The log reaches us through the proxy's stdout a little after the client's answer.
    const watchLines = () => payloadLines().filter((l) => l["grpc.method"] === "Watch");
    await eventually(
      () => watchLines().some((l) => String(l["grpc.response.content"]).includes('"events"')),
      "the event's line",
    );
    assert.ok(watchLines().some((l) => String(l["grpc.request.content"]).includes("createRequest")));
    assert.ok(watchLines().some((l) => String(l["grpc.response.content"]).includes('"created":true')));
    await client.unary("Lease", "LeaseRevoke", { ID: "4711" }).catch(() => undefined);
    const revokes = () => payloadLines().filter((l) => l["grpc.method"] === "LeaseRevoke");
    await eventually(() => revokes().length === 2, "the revoke's lines");
    assert.equal(revokes()[1]!["grpc.response.error"], "etcdserver: requested lease not found");
  });

  it("logs calls from every surface: the JSON gateway's too", async () => {
    const res = await fetch(`http://${proxy.address}/v3/kv/range`, {
      method: "POST",
      body: JSON.stringify({ key: Buffer.from("from-gateway").toString("base64") }),
    });
    assert.equal(res.status, 200);
    // The line reaches the proxy's stdout when the call ends, which may be after the answer reached us.
    const logged = () =>
      payloadLines()
        .filter((l) => l["grpc.method"] === "Range")
        .some((l) => String(l["grpc.request.content"]).includes(Buffer.from("from-gateway").toString("base64")));
    await eventually(logged, "the gateway call's line");
  });

  it("never logs a password or a token", async () => {
    await ctl(proxy.address, ["user", "add", "root", `--new-user-password=${SECRET}`]);
    await ctl(proxy.address, ["auth", "enable"]);
    try {
      const md = await login(client, "root", SECRET);
      await client.unary("KV", "Range", { key: Buffer.from("logged") }, md);
      const token = md.get("token")[0] as string;
      const authenticates = () => payloadLines().filter((l) => l["grpc.method"] === "Authenticate");
      await eventually(() => authenticates().length >= 2, "Authenticate's lines");
      const authenticate = authenticates();
      const output = proxy.output();
      assert.ok(!output.includes(SECRET), "the password is not in the log");
      assert.ok(!output.includes(token), "the token is not in the log");
      assert.deepEqual(JSON.parse(authenticate[0]!["grpc.request.content"] as string), {
        name: "root",
        password: "[redacted]",
      });
      assert.equal(JSON.parse(authenticate[1]!["grpc.response.content"] as string).token, "[redacted]");
    } finally {
      await ctl(proxy.address, [`--user=root:${SECRET}`, "auth", "disable"]);
    }
  });
});
