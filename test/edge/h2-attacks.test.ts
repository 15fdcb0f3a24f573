// The edge under attack: one regression test per known HTTP/2 attack class,
// each against a proxy process with default flags in front of a real etcd,
// over h2c and over TLS. While each attack runs, a well-behaved client keeps
// calling through the proxy; afterwards the proxy's RSS has grown by at most
// 64 MB, etcdctl still works, and at the end SIGTERM still stops it.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it, type TestContext } from "node:test";
import { makePki, type TestPki } from "../helpers/certs.js";
import { startCli } from "../helpers/cli.js";
import { callsStarted, openStreams, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import {
  attacker,
  END_HEADERS,
  END_STREAM,
  ENHANCE_YOUR_CALM,
  frame,
  grpcMessage,
  grpcRequestBlock,
  indexed,
  literalIndexed,
  PREFACE,
  rangeRequest,
  rssOf,
  settings,
  sleep,
  T,
  u32,
} from "../helpers/h2-attacker.js";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";

const MB = 1 << 20;

const RANGE = "/etcdserverpb.KV/Range";

for (const transport of ["h2c", "tls"] as const) {
  describe(`the edge under attack, over ${transport}`, () => {
    let etcd: EtcdCluster;
    let pki: TestPki | undefined;
    let proxy: Awaited<ReturnType<typeof startCli>>;
    let probe: EtcdGrpcClient;
    const useTls = transport === "tls";

    before(async () => {
      etcd = await startEtcd(1);
      const tlsArgs: string[] = [];
      if (useTls) {
        pki = makePki();
        tlsArgs.push(`--cert-file=${pki.server.cert}`, `--key-file=${pki.server.key}`);
      }
      proxy = await startCli(etcd.endpoints, tlsArgs);
      probe = new EtcdGrpcClient(proxy.address, useTls ? grpc.credentials.createSsl(readFileSync(pki!.ca)) : undefined);
      await probe.unary("KV", "Put", { key: Buffer.from("probe"), value: Buffer.from("v") });
      // A value large enough that two hundred answers to it would be 200 MB.
      await probe.unary("KV", "Put", { key: Buffer.from("big"), value: Buffer.alloc(MB, 1) });
    });

    after(async () => {
      probe?.close();
      if (proxy) {
        proxy.child.kill("SIGTERM");
        const code = await Promise.race([proxy.exited, sleep(10_000).then(() => "timeout" as const)]);
        assert.notEqual(code, "timeout", "SIGTERM did not stop the proxy within 10 s after the attacks");
      }
      await etcd?.stop();
      pki?.remove();
    });

    const ctlArgs = () => (useTls ? [`--cacert=${pki!.ca}`] : []);
    const ctlEndpoint = () => (useTls ? `https://${proxy.address}` : proxy.address);

    /**
     * Runs `attack` while a client calls Status through the proxy every 50 ms,
     * and samples the proxy's RSS; then checks the client was served
     * throughout, memory stayed bounded, and etcdctl still works.
     */
    async function underAttack(t: TestContext, attack: () => Promise<void>): Promise<void> {
      const pid = proxy.child.pid!;
      const before = rssOf(pid);
      let peak = before;
      let running = true;
      const latencies: number[] = [];
      const failures: string[] = [];
      const probing = (async () => {
        while (running) {
          const t0 = performance.now();
          try {
            await probe.unary("Maintenance", "Status", {}, undefined, 5_000);
            latencies.push(performance.now() - t0);
          } catch (err) {
            failures.push((err as Error).message);
          }
          peak = Math.max(peak, rssOf(pid));
          await sleep(50);
        }
      })();
      try {
        await attack();
      } finally {
        running = false;
        await probing;
      }
      peak = Math.max(peak, rssOf(pid));
      assert.deepEqual(failures, [], "a well-behaved client failed during the attack");
      assert.ok(latencies.length > 0, "the probe made no call");
      // A liveness bound, not a performance figure.
      assert.ok(Math.max(...latencies) < 5_000, `a call waited ${Math.max(...latencies).toFixed(0)} ms`);
      assert.ok(peak - before < 64 * MB, `RSS grew by ${((peak - before) / MB).toFixed(1)} MB`);
      const sorted = [...latencies].sort((a, b) => a - b);
      t.diagnostic(
        `probe: ${sorted.length} calls, p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1)} ms, ` +
          `max ${sorted.at(-1)!.toFixed(1)} ms; RSS +${((peak - before) / MB).toFixed(1)} MB`,
      );
      const out = await ctl(ctlEndpoint(), [...ctlArgs(), "get", "probe", "--print-value-only"]);
      assert.equal(out.trim(), "v");
    }

    if (!useTls) {
      it("one byte, or any partial preface, does not stop the proxy; silent connections are closed", async (t) => {
        await underAttack(t, async () => {
          const held = [];
          for (let i = 0; i < 20; i++) {
            const a = await attacker(proxy.address);
            a.write(Buffer.from("P"));
            if (i % 2) a.destroy();
            else held.push(a);
          }
          const partial = await attacker(proxy.address);
          partial.write(PREFACE.subarray(0, 10));
          held.push(partial);
          const silent = await attacker(proxy.address);
          held.push(silent);
          await sleep(1_000);
          // Each is closed by the proxy once its time to decide runs out.
          await Promise.all(held.map((a) => Promise.race([a.closed, sleep(10_000)])));
          assert.ok(
            held.every((a) => a.seen.closed),
            "a connection that never said enough stayed open",
          );
        });
      });

      it("serves a client whose preface arrives in two segments", async () => {
        const a = await attacker(proxy.address);
        a.write(PREFACE.subarray(0, 7));
        await sleep(100);
        a.write(Buffer.concat([PREFACE.subarray(7), settings()]));
        a.write(frame(T.HEADERS, END_HEADERS, 1, grpcRequestBlock(RANGE)));
        a.write(frame(T.DATA, END_STREAM, 1, grpcMessage(rangeRequest("probe"))));
        await sleep(500);
        assert.equal(a.seen.goaway, undefined);
        assert.equal(a.seen.rst.size, 0);
        assert.ok(a.seen.bytes > 60, "no answer");
        a.destroy();
      });
    }

    it("closes a connection that does not finish its preface and SETTINGS in time", async () => {
      const a = await attacker(proxy.address, { tls: useTls });
      a.write(PREFACE);
      const t0 = Date.now();
      await Promise.race([a.closed, sleep(15_000)]);
      assert.ok(a.seen.closed, "still open after 15 s");
      assert.ok(Date.now() - t0 < 10_000);
    });

    it("answers an HPACK bomb with RST_STREAM, not megabytes of headers sent on to etcd", async (t) => {
      await underAttack(t, async () => {
        const a = await attacker(proxy.address, { tls: useTls });
        a.handshake();
        // 16 KB on the wire: one 4 KB token in the dynamic table, then 16,000 references to it (64 MB decoded).
        for (let i = 0; i < 4; i++) {
          const id = 1 + 2 * i;
          const block = Buffer.concat([
            grpcRequestBlock(RANGE),
            literalIndexed("token", "t".repeat(4000)),
            Buffer.alloc(12_000, indexed(62)),
          ]);
          a.write(frame(T.HEADERS, END_HEADERS | END_STREAM, id, block));
        }
        // The connection goes on serving: a normal request on it is answered.
        a.write(frame(T.HEADERS, END_HEADERS, 9, grpcRequestBlock(RANGE)));
        a.write(frame(T.DATA, END_STREAM, 9, grpcMessage(rangeRequest("probe"))));
        await sleep(1_000);
        assert.deepEqual(
          [1, 3, 5, 7].map((id) => a.seen.rst.get(id)),
          [6, 6, 6, 6],
          "FRAME_SIZE_ERROR for each",
        );
        assert.equal(a.seen.goaway, undefined);
        assert.equal(a.seen.rst.get(9), undefined);
        a.destroy();
      });
    });

    it("bounds CONTINUATION frames by count: empty ones cannot grow memory", async (t) => {
      await underAttack(t, async () => {
        const a = await attacker(proxy.address, { tls: useTls });
        a.handshake();
        a.write(frame(T.HEADERS, 0, 1, grpcRequestBlock(RANGE)));
        const empty = frame(T.CONTINUATION, 0, 1);
        const batch = Buffer.concat(Array.from({ length: 10_000 }, () => empty));
        for (let i = 0; i < 50 && !a.seen.closed; i++) {
          a.write(batch);
          await sleep(10);
        }
        await Promise.race([a.closed, sleep(5_000)]);
        assert.equal(a.seen.goaway, ENHANCE_YOUR_CALM);
        assert.ok(a.seen.closed);
      });
    });

    it("counts resets the server sends for a client's errors toward the reset limit (MadeYouReset)", async (t) => {
      const rangesBefore = await callsStarted(etcd.members[0]!.clientUrl, "Range");
      await underAttack(t, async () => {
        const a = await attacker(proxy.address, { tls: useTls });
        a.handshake();
        // A request, then a zero WINDOW_UPDATE on its stream: the server must reset it.
        let id = 1;
        for (let round = 0; round < 40 && !a.seen.closed; round++) {
          const parts: Buffer[] = [];
          for (let i = 0; i < 500; i++, id += 2) {
            parts.push(
              frame(T.HEADERS, END_HEADERS, id, grpcRequestBlock(RANGE)),
              frame(T.DATA, END_STREAM, id, grpcMessage(rangeRequest("probe"))),
              frame(T.WINDOW_UPDATE, 0, id, u32(0)),
            );
          }
          a.write(Buffer.concat(parts));
          await sleep(20);
        }
        await Promise.race([a.closed, sleep(5_000)]);
        assert.equal(a.seen.goaway, ENHANCE_YOUR_CALM, "the connection was not closed for its resets");
      });
      const rangesAfter = await callsStarted(etcd.members[0]!.clientUrl, "Range");
      // The burst (1,000) and the steady rate for the attack's few seconds: not 20,000.
      assert.ok(rangesAfter - rangesBefore < 1_500, `${rangesAfter - rangesBefore} Range calls reached etcd`);
    });

    for (const [name, payload] of [
      ["SETTINGS", () => settings()],
      ["PING", () => frame(T.PING, 0, 0, Buffer.alloc(8))],
    ] as const) {
      it(`a ${name} flood from a client that does not read stops being read, then is closed`, async (t) => {
        await underAttack(t, async () => {
          const a = await attacker(proxy.address, { read: false, tls: useTls });
          a.handshake();
          // A watch stays open meanwhile, as in the attack seen in the wild.
          a.write(frame(T.HEADERS, END_HEADERS, 1, grpcRequestBlock("/etcdserverpb.Watch/Watch")));
          const one = payload();
          const batch = Buffer.concat(Array.from({ length: 4096 }, () => one));
          let written = 0;
          const until = Date.now() + 4_000;
          while (Date.now() < until && !a.seen.closed && written < 200 * MB) {
            // Write only while the kernel takes it: the test process must not buffer the flood itself.
            if (a.socket.writableLength < 4 * MB) {
              a.write(batch);
              written += batch.length;
            }
            await sleep(1);
          }
          a.destroy();
        });
      });
    }

    it("bounds what it holds for a client that never opens its window, and leaves etcd's answers in etcd", async (t) => {
      await underAttack(t, async () => {
        const a = await attacker(proxy.address, { tls: useTls });
        // A zero initial window: no DATA can ever reach this client.
        a.handshake([0x4, 0]);
        const parts: Buffer[] = [];
        for (let i = 0, id = 1; i < 400; i++, id += 2) {
          parts.push(
            frame(T.HEADERS, END_HEADERS, id, grpcRequestBlock(RANGE)),
            frame(T.DATA, END_STREAM, id, grpcMessage(rangeRequest("big"))),
          );
        }
        a.write(Buffer.concat(parts));
        // 400 answers of 1 MB each: without back-pressure toward etcd, 400 MB would pile up here.
        // Each call waiting for the client to read holds up to 16 KiB of its answer: past 256 such
        // calls on one connection, the rest are refused (RESOURCE_EXHAUSTED, a Trailers-Only answer).
        const until = Date.now() + 20_000;
        while (a.seen.endedByHeaders <= 50 && Date.now() < until) await sleep(100);
        assert.ok(a.seen.endedByHeaders > 50, `only ${a.seen.endedByHeaders} calls were refused`);
        a.destroy();
      });
      // The client left: every call it made is cancelled upstream too.
      const until = Date.now() + 10_000;
      while ((await openStreams(etcd.members[0]!.clientUrl, "Range")) > 0) {
        assert.ok(Date.now() < until, "Range calls stayed open in etcd after their client left");
        await sleep(100);
      }
    });

    it("holds unanswered bridged requests to the connection window, not 4 MiB each", async (t) => {
      await underAttack(t, async () => {
        const session = http2.connect(`${useTls ? "https" : "http"}://${proxy.address}`, {
          rejectUnauthorized: false,
        });
        session.on("error", () => {});
        // 100 Connect unary requests, each 3.9 MB of a message Connect gathers whole (up to 4 MiB) and never gets.
        const chunk = Buffer.alloc(256 << 10, 1);
        const requests = Array.from({ length: 100 }, () => {
          const req = session.request({
            ":method": "POST",
            ":path": "/etcdserverpb.KV/Range",
            "content-type": "application/proto",
          });
          req.on("error", () => {});
          return { req, sent: 0 };
        });
        const until = Date.now() + 4_000;
        while (Date.now() < until) {
          for (const r of requests) {
            if (r.sent < 3_900_000 && r.req.writableLength < 1 << 20) {
              r.req.write(chunk);
              r.sent += chunk.length;
            }
          }
          await sleep(5);
        }
        session.destroy();
      });
    });

    it("credits a bridged stream's window as node's server takes the body, not as it arrives", async (t) => {
      await underAttack(t, async () => {
        const session = http2.connect(`${useTls ? "https" : "http"}://${proxy.address}`, {
          rejectUnauthorized: false,
        });
        session.on("error", () => {});
        // The dashboard's static files never read a request body.
        const req = session.request({ ":method": "POST", ":path": "/web/", "content-type": "text/plain" });
        req.on("error", () => {});
        const chunk = Buffer.alloc(MB, 7);
        let sent = 0;
        const until = Date.now() + 4_000;
        while (Date.now() < until && !req.closed && sent < 300 * MB) {
          if (req.writableLength < 4 * MB) {
            req.write(chunk);
            sent += chunk.length;
          }
          await sleep(2);
        }
        req.destroy();
        session.destroy();
      });
    });
  });
}
