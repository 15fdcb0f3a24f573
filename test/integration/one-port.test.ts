// One listen address serves native gRPC (h2c), gRPC-Web and Connect over
// HTTP/1.1 and HTTP/2, plain HTTP, and the same over TLS with ALPN.
import { execFile } from "node:child_process";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as https from "node:https";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import type { RunningProxy } from "../../src/main.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { openStreams } from "../helpers/etcd.js";
import { ctl, spawnCtl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { startTestProxy } from "../helpers/proxy.js";
import { envelope } from "../helpers/raw.js";

const run = promisify(execFile);
const b64 = (s: string) => Buffer.from(s).toString("base64");

const f = useProxy(1);

/** Reads the value of `key` through a Connect JSON call over HTTP/1.1. */
async function connectGet(base: string, key: string): Promise<string> {
  const res = await fetch(`${base}/etcdserverpb.KV/Range`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key: b64(key) }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { kvs?: Array<{ value: string }> };
  return Buffer.from(body.kvs?.[0]?.value ?? "", "base64").toString();
}

/** Sends one request over HTTP/2 to `origin` and returns status and body. */
function h2Request(
  origin: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | string,
  options: http2.SecureClientSessionOptions = {},
): Promise<{ status: number; body: Buffer; alpn: string | false | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, options);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ...headers });
    let status = 0;
    const chunks: Buffer[] = [];
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("close", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ status, body: Buffer.concat(chunks), alpn });
    });
    req.end(body);
  });
}

describe("cleartext port", () => {
  it("native gRPC over h2c (grpc-js)", async () => {
    await f.client.unary("KV", "Put", { key: Buffer.from("port/grpc"), value: Buffer.from("g") });
    const res = await f.client.unary("KV", "Range", { key: Buffer.from("port/grpc") });
    assert.equal((res.kvs as Array<{ value: Buffer }>)[0]!.value.toString(), "g");
  });

  it("Connect JSON over HTTP/1.1", async () => {
    const put = await fetch(`http://${f.proxy.address}/etcdserverpb.KV/Put`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: b64("port/json"), value: b64("j") }),
    });
    assert.equal(put.status, 200);
    assert.ok(((await put.json()) as { header: { revision: string } }).header.revision);
    assert.equal(await connectGet(`http://${f.proxy.address}`, "port/json"), "j");
  });

  it("Connect JSON over HTTP/2 (h2c)", async () => {
    const res = await h2Request(
      `http://${f.proxy.address}`,
      { ":path": "/etcdserverpb.KV/Range", "content-type": "application/json" },
      JSON.stringify({ key: b64("port/json") }),
    );
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body.toString()) as { kvs: Array<{ value: string }> };
    assert.equal(Buffer.from(body.kvs[0]!.value, "base64").toString(), "j");
  });

  it("Connect GET for read-only RPCs", async () => {
    const message = encodeURIComponent(JSON.stringify({ key: b64("port/json") }));
    const res = await fetch(
      `http://${f.proxy.address}/etcdserverpb.KV/Range?connect=v1&encoding=json&message=${message}`,
    );
    assert.equal(res.status, 200);
    const body = (await res.json()) as { kvs: Array<{ value: string }> };
    assert.equal(Buffer.from(body.kvs[0]!.value, "base64").toString(), "j");
  });

  it("gRPC-Web (binary) over HTTP/1.1", async () => {
    // RangeRequest{key: "port/json"}
    const key = Buffer.from("port/json");
    const res = await fetch(`http://${f.proxy.address}/etcdserverpb.KV/Range`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: envelope(Buffer.concat([Buffer.from([0x0a, key.length]), key])),
    });
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    // A data frame (flag 0) with the RangeResponse, then a trailer frame (flag 0x80).
    assert.equal(bytes[0], 0);
    const dataLen = bytes.readUInt32BE(1);
    assert.ok(bytes.subarray(5, 5 + dataLen).includes(Buffer.from("port/json")));
    const trailer = bytes.subarray(5 + dataLen);
    assert.equal(trailer[0], 0x80);
    assert.match(trailer.subarray(5).toString(), /grpc-status: ?0/);
  });

  it("plain HTTP paths share the port", async () => {
    assert.equal((await fetch(`http://${f.proxy.address}/livez`)).status, 200);
    assert.equal((await fetch(`http://${f.proxy.address}/nope`)).status, 404);
  });

  it("a killed etcdctl watch releases its upstream watch stream (kill -9)", async () => {
    const baseline = await openStreams(f.etcd.members[0]!.clientUrl, "Watch");
    const watch = spawnCtl(f.proxy.address, ["watch", "port/leak"]);
    await waitFor(async () => (await openStreams(f.etcd.members[0]!.clientUrl, "Watch")) === baseline + 1);
    await watch.kill("SIGKILL");
    await waitFor(async () => (await openStreams(f.etcd.members[0]!.clientUrl, "Watch")) === baseline);
  });
});

describe("--max-concurrent-streams", () => {
  it("reaches the HTTP/2 server: a 4th stream waits until one of 3 ends", async () => {
    const proxy = await startTestProxy(f.etcd.endpoints, ["--max-concurrent-streams=3"]);
    const session = http2.connect(`http://${proxy.address}`);
    try {
      await new Promise((r) => session.once("remoteSettings", r));
      assert.equal(session.remoteSettings.maxConcurrentStreams, 3);
      const create = envelope(Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x6b])); // WatchRequest{create_request{key:"k"}}
      const answered: number[] = [];
      const streams = Array.from({ length: 4 }, (_, i) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/etcdserverpb.Watch/Watch",
          "content-type": "application/grpc",
          te: "trailers",
        });
        stream.on("response", () => answered.push(i));
        stream.on("error", () => {});
        stream.write(create);
        return stream;
      });
      const until = Date.now() + 5000;
      while (answered.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual([...answered].sort(), [0, 1, 2], "three streams run, the fourth waits");
      streams[0]!.close();
      while (answered.length < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.ok(answered.includes(3), "the fourth runs once a slot is free");
    } finally {
      session.destroy();
      await proxy.close();
    }
  });
});

describe("TLS port", () => {
  let pki: TestPki;
  let tlsProxy: RunningProxy;
  let ca: Buffer;

  before(async () => {
    pki = makePki();
    ca = readFileSync(pki.ca);
    tlsProxy = await startTestProxy(f.etcd.endpoints, [
      `--cert-file=${pki.server.cert}`,
      `--key-file=${pki.server.key}`,
    ]);
  });

  after(async () => {
    await tlsProxy?.close();
    pki?.remove();
  });

  it("etcdctl over https (ALPN h2): put, get and watch", async () => {
    const endpoint = `https://${tlsProxy.address}`;
    const tlsArgs = [`--cacert=${pki.ca}`];
    assert.equal(await ctl(endpoint, [...tlsArgs, "put", "tls/k", "secure"]), "OK\n");
    assert.equal(await ctl(endpoint, [...tlsArgs, "get", "tls/k", "--print-value-only"]), "secure\n");
    const watch = spawnCtl(endpoint, [...tlsArgs, "watch", "tls/k"]);
    try {
      await new Promise((r) => setTimeout(r, 500));
      await ctl(f.etcd.endpoints, ["put", "tls/k", "again"]);
      await watch.waitFor("PUT\ntls/k\nagain\n");
    } finally {
      await watch.kill();
    }
  });

  it("HTTP/2 clients negotiate h2 and HTTP/1.1 clients http/1.1", async () => {
    const h2 = await h2Request(
      `https://${tlsProxy.address}`,
      { ":path": "/etcdserverpb.KV/Range", "content-type": "application/json" },
      JSON.stringify({ key: b64("tls/k") }),
      { ca },
    );
    assert.equal(h2.alpn, "h2");
    assert.equal(h2.status, 200);

    const h1 = await new Promise<{ status: number; alpn: string | false | null; body: string }>((resolve, reject) => {
      const req = https.request(
        `https://${tlsProxy.address}/etcdserverpb.KV/Range`,
        { method: "POST", ca, headers: { "content-type": "application/json" } },
        (res) => {
          const alpn = (res.socket as { alpnProtocol?: string | false }).alpnProtocol ?? null;
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode!, alpn, body }));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ key: b64("tls/k") }));
    });
    assert.equal(h1.status, 200);
    assert.notEqual(h1.alpn, "h2");
    assert.match(h1.body, new RegExp(b64("again")));
  });

  it("curl over https, with HTTP/2 and with HTTP/1.1", async () => {
    for (const version of ["--http2", "--http1.1"]) {
      const { stdout } = await run("curl", ["-sS", version, "--cacert", pki.ca, `https://${tlsProxy.address}/health`]);
      assert.equal(stdout, '{"health":"true","reason":""}', version);
      // The self-check reaches the proxy through its own TLS listener.
      const self = await run("curl", ["-sS", version, "--cacert", pki.ca, `https://${tlsProxy.address}/proxy/health`]);
      assert.equal(self.stdout, '{"health":"true","reason":""}', `${version} /proxy/health`);
    }
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}
