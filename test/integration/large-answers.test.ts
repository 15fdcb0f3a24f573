// Large answers relayed as they arrive (ReadLoan, ArrivingAnswer): every
// client gets etcd's bytes exactly, whatever its window, however slowly it
// reads, and an answer cut off midway is an error, never a short OK.
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { RangeRequestSchema, RangeResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { RunningProxy } from "../../src/main.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { proxyMetric } from "../helpers/metrics.js";
import { startTestProxy } from "../helpers/proxy.js";
import { envelope } from "../helpers/raw.js";

const KEYS = 300;
const VALUE = "v".repeat(4000); // 300 × 4 KB: a 1.2 MB answer, past the 128 KiB from which answers are relayed

async function fill(put: (key: string, value: string) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < KEYS; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => put(`large/${String(i + j).padStart(4, "0")}`, VALUE)));
  }
}

const rangeFrame = (serializable = false) =>
  envelope(
    Buffer.from(
      toBinary(
        RangeRequestSchema,
        create(RangeRequestSchema, { key: Buffer.from("large/"), rangeEnd: Buffer.from("large0"), serializable }),
      ),
    ),
  );

interface Answer {
  grpcStatus: string | undefined;
  body: Buffer;
}

/** One Range on `session`, its whole body and grpc-status. */
function range(session: http2.ClientHttp2Session, frame = rangeFrame()): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": "/etcdserverpb.KV/Range",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    req.on("response", (h) => (grpcStatus ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (grpcStatus = t["grpc-status"] as string));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("close", () => resolve({ grpcStatus, body: Buffer.concat(chunks) }));
    req.on("error", reject);
    req.end(frame);
  });
}

/** A client connection; `window`: its stream window (16 MiB, or node's 64 KiB default). */
function session(address: string, window?: number): http2.ClientHttp2Session {
  const s = http2.connect(`http://${address}`, window ? { settings: { initialWindowSize: window } } : {});
  s.on("error", () => {});
  if (window) s.on("connect", () => s.setLocalWindowSize(4 * window));
  return s;
}

/** A TCP relay to `target`; `onAnswer` sees each chunk coming back and may hold or cut it. */
async function relay(
  target: string,
  onAnswer: (chunk: Buffer, client: net.Socket, upstream: net.Socket) => void,
): Promise<{ address: string; close(): void }> {
  const [host, port] = target.split(":");
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => (sockets.delete(s), client.destroy(), upstream.destroy()));
    }
    client.pipe(upstream);
    upstream.on("data", (chunk: Buffer) => onAnswer(chunk, client, upstream));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe("large answers, relayed as they arrive", () => {
  const f = useProxy(1, {
    // Long enough that a loaded machine's second read still finds what the first cached.
    proxyArgs: ["--cache-ttl=1m"],
    setup: (f) =>
      fill((key, value) => f.direct.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) })),
  });
  let want: Buffer;
  before(async () => {
    const direct = session(f.etcd.members[0]!.endpoint.replace(/^https?:\/\//, ""), 16 << 20);
    want = (await range(direct)).body;
    direct.destroy();
    assert.ok(want.length > 1_200_000, `the answer is large (${want.length} bytes)`);
  });

  it("gives etcd's bytes exactly to many calls at once, on clients with large and with small windows", async () => {
    const sessions = [session(f.proxy.address, 16 << 20), session(f.proxy.address)];
    try {
      const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => range(sessions[i % 2]!)));
      for (const [i, a] of answers.entries()) {
        assert.equal(a.grpcStatus, "0", `call ${i}`);
        assert.ok(a.body.equals(want), `call ${i}: etcd's answer, byte for byte`);
      }
    } finally {
      for (const s of sessions) s.destroy();
    }
  });

  it("answers etcd's JSON gateway as etcd's own gateway does, for large Ranges and a Txn of them", async () => {
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const bodies = [
      { key: b64("large/"), range_end: b64("large0") },
      { key: b64("large/"), range_end: b64("large0"), serializable: true, limit: 250 },
      { key: b64("large/"), range_end: b64("large0"), keys_only: true },
      {
        compare: [{ target: "VERSION", key: b64("large/0000"), result: "GREATER", version: "0" }],
        success: [
          { request_range: { key: b64("large/"), range_end: b64("large0") } },
          { request_range: { key: b64("large/0001"), count_only: true } },
        ],
      },
    ];
    const post = async (base: string, path: string, body: object) => {
      const res = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
      return (await res.json()) as Record<string, unknown>;
    };
    const etcd = f.etcd.members[0]!.clientUrl;
    const proxy = `http://${f.proxy.address}`;
    for (const [i, body] of bodies.entries()) {
      const path = "compare" in body ? "/v3/kv/txn" : "/v3/kv/range";
      const mine = await post(proxy, path, body);
      const theirs = await post(etcd, path, body);
      assert.deepEqual(mine, theirs, `request ${i}`);
    }
    const whole = await post(proxy, "/v3/kv/range", bodies[0]!);
    assert.equal((whole.kvs as unknown[]).length, KEYS);
  });

  it("answers Connect's JSON as Connect writes it, by POST and GET, compressed as asked, and leaves its errors to it", async () => {
    // What Connect's own writer gives for etcd's answer (read natively, with nothing written since).
    const native = session(f.proxy.address, 16 << 20);
    const answer = await range(native);
    native.destroy();
    const expected = JSON.stringify(
      toJson(RangeResponseSchema, fromBinary(RangeResponseSchema, answer.body.subarray(5))),
    );
    const base = `http://${f.proxy.address}/etcdserverpb.KV/Range`;
    const request = JSON.stringify({
      key: Buffer.from("large/").toString("base64"),
      rangeEnd: Buffer.from("large0").toString("base64"),
      unknownField: 1,
    });
    const raw = (headers: Record<string, string>, body = request, url = base) =>
      new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const s = http2.connect(`http://${f.proxy.address}`);
        const u = new URL(url);
        const req = s.request({ ":method": body === "" ? "GET" : "POST", ":path": u.pathname + u.search, ...headers });
        const chunks: Buffer[] = [];
        let head: http2.IncomingHttpHeaders = {};
        req.on("response", (h) => (head = h));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on(
          "end",
          () => (s.close(), resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks) })),
        );
        req.on("error", reject);
        req.end(body === "" ? undefined : body);
      });
    // POST, no compression asked for.
    const plain = await raw({ "content-type": "application/json" });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers["content-type"], "application/json");
    assert.equal(plain.headers["content-encoding"], undefined);
    assert.equal(Number(plain.headers["content-length"]), plain.body.length);
    assert.equal(plain.body.toString(), expected);
    // POST from a browser's fetch, which asks for gzip, deflate and br: Connect picks gzip, the first it has.
    const gz = await raw({ "content-type": "application/json; charset=utf-8", "accept-encoding": "gzip, deflate, br" });
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.equal(gunzipSync(gz.body).toString(), expected);
    const br = await raw({ "content-type": "application/json", "accept-encoding": "br" });
    assert.equal(br.headers["content-encoding"], "br");
    assert.equal(brotliDecompressSync(br.body).toString(), expected);
    // GET, as Connect's cheap reads may come, in both spellings of the message (fetch undoes any compression).
    const message = encodeURIComponent(request);
    const get = await fetch(`${base}?encoding=json&message=${message}&connect=v1`);
    assert.equal(get.status, 200);
    assert.equal(await get.text(), expected);
    const get64 = await fetch(`${base}?encoding=json&base64=1&message=${Buffer.from(request).toString("base64url")}`);
    assert.equal(await get64.text(), expected);
    // What Connect refuses, it still refuses in its own words.
    const bad = await raw({ "content-type": "application/json" }, "{not json");
    assert.equal(bad.status, 400);
    assert.match(bad.body.toString(), /"code":"invalid_argument"/);
    const badGet = await fetch(`${base}?encoding=json&message=${encodeURIComponent('{"key": 5}')}`);
    assert.equal(badGet.status, 400);
  });

  it("gives etcd's bytes exactly to a client that stops reading for a while, many calls deep", async () => {
    // The client stops reading for 300 ms of every 400: the proxy's socket
    // backs up, and writes are still in flight when their read is done.
    const upstreams = new Set<net.Socket>();
    const slow = await relay(f.proxy.address, (chunk, client, upstream) => {
      upstreams.add(upstream);
      client.write(chunk);
    });
    const stall = setInterval(() => {
      for (const u of upstreams) u.pause();
      setTimeout(() => upstreams.forEach((u) => u.resume()), 300);
    }, 400);
    const s = session(slow.address, 16 << 20);
    try {
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(Array.from({ length: 4 }, () => range(s)));
        for (const a of answers) {
          assert.equal(a.grpcStatus, "0");
          assert.ok(a.body.equals(want), "etcd's answer, byte for byte");
        }
      }
    } finally {
      clearInterval(stall);
      s.destroy();
      slow.close();
    }
  });

  it("etcdctl and grpc-js read the same keys through the proxy as from etcd", async () => {
    const through = await ctl(f.proxy.address, ["get", "large/", "--prefix", "--keys-only"]);
    const direct = await ctl(f.etcd.members[0]!.endpoint, ["get", "large/", "--prefix", "--keys-only"]);
    assert.equal(through, direct);
    assert.equal(through.split("\n").filter(Boolean).length, KEYS);
    const answer = (await f.client.unary("KV", "Range", {
      key: Buffer.from("large/"),
      range_end: Buffer.from("large0"),
    })) as { kvs: Array<{ value: Buffer }> };
    assert.equal(answer.kvs.length, KEYS);
    assert.ok(answer.kvs.every((kv) => Buffer.from(kv.value).toString() === VALUE));
  });

  it("the gateway's JSON answer holds every key", async () => {
    const res = await fetch(`http://${f.proxy.address}/v3/kv/range`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        key: Buffer.from("large/").toString("base64"),
        range_end: Buffer.from("large0").toString("base64"),
      }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { kvs: unknown[]; count: string };
    assert.equal(body.kvs.length, KEYS);
    assert.equal(body.count, String(KEYS));
  });

  it("a linearizable read does not fill the cache with a large answer; a serializable one does, and hits after", async () => {
    const hits = () => proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total");
    const s = session(f.proxy.address, 16 << 20);
    try {
      const before = await hits();
      assert.ok((await range(s)).body.equals(want));
      assert.ok((await range(s, rangeFrame(true))).body.equals(want), "the first serializable read misses");
      assert.equal(await hits(), before, "nothing was cached by the linearizable read");
      assert.ok((await range(s, rangeFrame(true))).body.equals(want), "the second is served from the cache");
      assert.equal(await hits(), before + 1);
    } finally {
      s.destroy();
    }
  });
});

describe("a large answer cut off midway", () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  let cut: { address: string; close(): void };
  /** Bytes of etcd's answers let through before the relay cuts the connection; Infinity: none cut. */
  let budget = Infinity;

  before(async () => {
    etcd = await startEtcd(1);
    const endpoint = etcd.members[0]!.endpoint.replace(/^https?:\/\//, "");
    cut = await relay(endpoint, (chunk, client) => {
      if (chunk.length < budget) {
        budget -= chunk.length;
        client.write(chunk);
      } else {
        client.write(chunk.subarray(0, budget));
        budget = Infinity;
        client.destroy();
      }
    });
    const direct = session(endpoint, 16 << 20);
    await fill(async (key, value) => {
      const req = direct.request({
        ":method": "POST",
        ":path": "/etcdserverpb.KV/Put",
        "content-type": "application/grpc",
        te: "trailers",
      });
      req.end(
        envelope(
          Buffer.concat([
            Buffer.from([0x0a, key.length]),
            Buffer.from(key),
            Buffer.from([0x12, 0xa0, 0x1f]),
            Buffer.from(value),
          ]),
        ),
      );
      req.resume();
      await once(req, "close");
    });
    direct.destroy();
    proxy = await startTestProxy(`http://${cut.address}`, ["--cache-max-bytes=0"]);
  });
  after(async () => {
    await proxy?.close();
    cut?.close();
    await etcd?.stop();
  });

  it("ends with Unavailable after the bytes that came, never with OK", async () => {
    const s = session(proxy.address, 16 << 20);
    try {
      const whole = await range(s);
      assert.equal(whole.grpcStatus, "0");
      budget = 600_000; // the next answer's connection goes down about halfway
      const broken = await range(s);
      assert.equal(broken.grpcStatus, "14", "Unavailable");
      assert.ok(broken.body.length < whole.body.length, "the client got part of the answer, then the error");
      const again = await range(s);
      assert.equal(again.grpcStatus, "0", "the next call goes through a new connection");
      assert.ok(again.body.equals(whole.body));
    } finally {
      s.destroy();
    }
  });
});
