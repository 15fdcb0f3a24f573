// One call boundary: the same calls through every surface the port serves
// (native gRPC, Connect, gRPC-Web, etcd's JSON gateway) get the same etcd
// answer, count in the same metrics, end at the same deadline and end the
// same way when the cluster loses its leader.
import { createClient, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { KV, Lease } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { WatchService } from "../../src/gen/etcdproxy/v1/proxy_pb.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { loseQuorum, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, type GrpcError } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";

type Lane = "native gRPC" | "Connect" | "gRPC-Web" | "gateway";
const LANES: Lane[] = ["native gRPC", "Connect", "gRPC-Web", "gateway"];

/** What a call came to: etcd's answer, or its error's code and message. */
type Outcome = { ok: unknown } | { code: number; message: string };

function transport(lane: "Connect" | "gRPC-Web", address: string, headers: Record<string, string> = {}): Transport {
  const withHeaders: Interceptor = (next) => async (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
  const options = { baseUrl: `http://${address}`, httpVersion: "1.1" as const, interceptors: [withHeaders] };
  return lane === "Connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
}

/** A gateway call: POST a JSON body; the answer's JSON, or its error as code and message. */
async function gateway(address: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`http://${address}${path}`, { method: "POST", body: JSON.stringify(body), headers });
  const json = (await res.json()) as { code?: number; message?: string };
  return res.status === 200 ? { ok: json } : { code: json.code!, message: json.message! };
}

describe(`every lane, one answer (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1);

  /** Range of `key` through `lane`: the value and mod revision etcd gave, or the error. */
  async function range(lane: Lane, key: string): Promise<Outcome> {
    const address = f.proxy.address;
    const shape = (kvs: Array<{ value: Uint8Array | string; modRevision?: bigint; mod_revision?: string }>) =>
      kvs.map((kv) => ({
        value:
          typeof kv.value === "string" ? Buffer.from(kv.value, "base64").toString() : Buffer.from(kv.value).toString(),
        modRevision: String(kv.modRevision ?? kv.mod_revision),
      }));
    try {
      if (lane === "native gRPC") {
        const r = (await f.client.unary("KV", "Range", { key: Buffer.from(key) })) as any;
        return { ok: shape(r.kvs) };
      }
      if (lane === "gateway") {
        const r = await gateway(address, "/v3/kv/range", { key: Buffer.from(key).toString("base64") });
        return "ok" in r ? { ok: shape((r.ok as any).kvs) } : r;
      }
      const r = await createClient(KV, transport(lane, address)).range({ key: Buffer.from(key) });
      return { ok: shape(r.kvs) };
    } catch (err) {
      return errorOutcome(err);
    }
  }

  async function revoke(lane: Lane, id: bigint): Promise<Outcome> {
    const address = f.proxy.address;
    try {
      if (lane === "native gRPC") return { ok: await f.client.unary("Lease", "LeaseRevoke", { ID: String(id) }) };
      if (lane === "gateway") return await gateway(address, "/v3/lease/revoke", { ID: String(id) });
      return { ok: await createClient(Lease, transport(lane, address)).leaseRevoke({ ID: id }) };
    } catch (err) {
      return errorOutcome(err);
    }
  }

  async function handled(method: string, code: string): Promise<number> {
    const text = await (await fetch(`http://${f.proxy.address}/proxy/metrics`)).text();
    const line = text
      .split("\n")
      .find(
        (l) =>
          l.startsWith("grpc_server_handled_total{") &&
          l.includes(`grpc_method="${method}"`) &&
          l.includes(`grpc_code="${code}"`),
      );
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  }

  it("a Range and a failing LeaseRevoke: etcd's answer, and one count in the same metric, on every lane", async () => {
    await f.direct.unary("KV", "Put", { key: Buffer.from("parity"), value: Buffer.from("v") });
    const expected = {
      range: await range("native gRPC", "parity"),
      revoke: { code: 5, message: "etcdserver: requested lease not found" },
    };
    assert.deepEqual((expected.range as { ok: unknown[] }).ok.length, 1);
    for (const lane of LANES) {
      const [rangesBefore, revokesBefore] = [await handled("Range", "OK"), await handled("LeaseRevoke", "NotFound")];
      assert.deepEqual(await range(lane, "parity"), expected.range, `${lane}: Range`);
      assert.deepEqual(await revoke(lane, 424242n), expected.revoke, `${lane}: LeaseRevoke`);
      assert.equal(await handled("Range", "OK"), rangesBefore + 1, `${lane}: Range counted once`);
      assert.equal(await handled("LeaseRevoke", "NotFound"), revokesBefore + 1, `${lane}: LeaseRevoke counted once`);
    }
  });

  it("a watch with a 1 s deadline ends with DeadlineExceeded on every lane", async () => {
    for (const lane of LANES) {
      const started = Date.now();
      const code = await watchUntilEnd(lane, f.proxy.address, { timeoutMs: 1000 });
      const took = Date.now() - started;
      assert.equal(code.code, grpc.status.DEADLINE_EXCEEDED, `${lane}: ${JSON.stringify(code)}`);
      assert.ok(took >= 900 && took < 5000, `${lane}: ended after ${took} ms`);
    }
  });

  it("a grpc-timeout grpc-go cannot read is refused as etcd refuses it, on both native-gRPC lanes", async () => {
    const answer = (address: string) =>
      new Promise<unknown>((resolve) => {
        const session = http2.connect(`http://${address}`);
        session.on("error", () => {});
        const req = session.request({
          ":method": "POST",
          ":path": "/etcdserverpb.KV/Range",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": "bogus",
        });
        const out: Record<string, unknown> = {};
        req.on("response", (h) =>
          Object.assign(out, { status: h[":status"], grpcStatus: h["grpc-status"], message: h["grpc-message"] }),
        );
        req.on("error", () => {});
        req.on("data", () => {});
        req.on("close", () => {
          out.reset = req.rstCode;
          session.close();
          resolve(out);
        });
        req.end(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]));
      });
    assert.deepEqual(await answer(f.proxy.address), await answer(f.etcd.members[0]!.endpoint));
  });
});

/**
 * Opens a watch on `lane` (native Watch, the browsers' server-streaming
 * watch over Connect or gRPC-Web, or the gateway's /v3/watch) and waits for
 * it to end; resolves with the status it ended with.
 */
async function watchUntilEnd(
  lane: Lane,
  address: string,
  options: { timeoutMs?: number; hasleader?: boolean; created?: () => void },
): Promise<{ code: number; message: string }> {
  const { timeoutMs, hasleader } = options;
  if (lane === "native gRPC") {
    const client = new EtcdGrpcClient(address);
    try {
      const metadata = new grpc.Metadata();
      if (hasleader) metadata.set("hasleader", "true");
      const c = client.client("Watch") as unknown as Record<string, Function>;
      const call = c["Watch"]!.call(c, metadata, timeoutMs ? { deadline: Date.now() + timeoutMs } : {});
      return await new Promise((resolve) => {
        call.on("data", (r: { created: boolean }) => r.created && options.created?.());
        call.on("error", (e: GrpcError) => resolve({ code: e.code, message: e.details }));
        call.on("end", () => resolve({ code: 0, message: "" }));
        call.write({ create_request: { key: Buffer.from("parity/watch") } });
      });
    } finally {
      client.close();
    }
  }
  if (lane === "gateway") {
    const headers: Record<string, string> = {};
    if (timeoutMs) headers["grpc-timeout"] = `${timeoutMs}m`;
    if (hasleader) headers["grpc-metadata-hasleader"] = "true";
    const res = await fetch(`http://${address}/v3/watch`, {
      method: "POST",
      headers,
      body: JSON.stringify({ create_request: { key: Buffer.from("parity/watch").toString("base64") } }),
    });
    const reader = res.body!.getReader();
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      if (text.includes('"created":true')) options.created?.();
    }
    const last = JSON.parse(text.trim().split("\n").at(-1)!) as {
      error?: { code?: number; grpc_code?: number; message: string };
    };
    return last.error
      ? { code: last.error.code ?? last.error.grpc_code!, message: last.error.message }
      : { code: 0, message: "" };
  }
  const client = createClient(WatchService, transport(lane, address, hasleader ? { hasleader: "true" } : {}));
  try {
    for await (const r of client.watch({ watches: [{ key: Buffer.from("parity/watch") }] }, { timeoutMs })) {
      if (r.created) options.created?.();
    }
    return { code: 0, message: "" };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
}

function errorOutcome(err: unknown): Outcome {
  if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
  const e = err as GrpcError;
  return { code: e.code, message: e.details };
}

describe("every lane, when the cluster loses its leader", () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  before(async () => {
    etcd = await startEtcd(3);
    proxy = await startTestProxy(etcd.members[2]!.endpoint);
  });
  after(async () => {
    await proxy?.close();
    await etcd?.stop();
  });

  it("a watch that requires a leader (hasleader) ends with etcd's 'no leader' on every lane", async () => {
    let created = 0;
    const ends = LANES.map((lane) =>
      watchUntilEnd(lane, proxy.address, { hasleader: true, created: () => created++ }).then((end) => ({
        lane,
        ...end,
      })),
    );
    const until = Date.now() + 10_000;
    while (created < LANES.length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(created, LANES.length, "every lane's watch was created");
    await loseQuorum(etcd);
    const results = await Promise.all(ends);
    assert.deepEqual(
      results,
      LANES.map((lane) => ({ lane, code: grpc.status.UNAVAILABLE, message: "etcdserver: no leader" })),
    );
  });
});
