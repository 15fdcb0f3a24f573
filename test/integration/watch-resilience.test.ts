// Watches that never stall: failover with writes running, leader loss for
// clients that require a leader, compaction while the upstream was away,
// slow consumers, and auth identities.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import {
  WatchRequestSchema,
  WatchResponseSchema,
  type WatchResponse,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { FrameDecoder, frame } from "../../src/grpc/wire.js";
import type { RunningProxy } from "../../src/main.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { loseQuorum, memberInUse, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, login } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";
import { WatchStream, eventually, revisions, type WatchReply } from "../helpers/watch.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Puts until told to stop, retrying through elections; the revisions come from etcd's own history. */
function putLoop(client: EtcdGrpcClient, key: string): { readonly made: number; stop(): Promise<void> } {
  let running = true;
  let made = 0;
  const done = (async () => {
    for (let i = 0; running; i++) {
      try {
        await client.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(String(i)) }, undefined, 3000);
        made++;
      } catch {
        await sleep(50); // an election or the killed member: try again
      }
      await sleep(10);
    }
  })();
  return {
    get made() {
      return made;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

/** Every revision of `key` from `from` on, as etcd itself reports it (a direct watch replays history). */
async function historyOf(client: EtcdGrpcClient, key: string, from: number, upTo: number): Promise<number[]> {
  const s = new WatchStream(client);
  s.create({ key, start_revision: from });
  await s.next();
  const got = await s.until((r) => revisions(r).at(-1) === upTo, 20_000);
  s.close();
  return revisions(got);
}

describe("failover with writes running", () => {
  const f = useProxy(3);

  it("every client watcher sees every revision exactly once, in order, across the loss of the member serving the watch", async () => {
    const key = "failover/k";
    const streams = Array.from({ length: 5 }, () => new WatchStream(f.client));
    for (const s of streams) for (let w = 0; w < 2; w++) s.create({ key });
    for (const s of streams) await s.until((r) => r.length === 2);
    const serving = memberInUse(f.proxy, f.etcd);
    const survivor = f.etcd.members.find((m) => m !== serving)!;
    const writer = new EtcdGrpcClient(survivor.endpoint);
    const start = Number(
      ((await writer.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("start") })) as any).header
        .revision,
    );
    const puts = putLoop(writer, key);
    try {
      // Counted writes, not time: a loaded machine makes fewer in a second.
      await eventually(() => puts.made >= 10, "writes before the kill", 20_000);
      await f.etcd.kill(serving);
      const afterKill = puts.made;
      await eventually(() => puts.made >= afterKill + 15, "writes after the kill", 30_000);
    } finally {
      await puts.stop();
    }
    const last = Number(
      ((await writer.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("end") })) as any).header.revision,
    );
    const expected = await historyOf(writer, key, start, last);
    assert.ok(expected.length > 20, `enough writes happened (${expected.length})`);
    for (const s of streams) {
      const reached = (r: WatchReply[], id: string) => revisions(r.filter((x) => x.watch_id === id)).at(-1) === last;
      const got = await s.until((r) => reached(r, "0") && reached(r, "1"), 20_000);
      for (const id of ["0", "1"]) {
        assert.deepEqual(
          revisions(got.filter((r) => r.watch_id === id)),
          expected,
          `watcher ${id}: exactly once, in order`,
        );
      }
      assert.equal(got.filter((r) => r.created).length, 0, "no second Created after failover");
      s.close();
    }
    writer.close();
    await f.etcd.restart(serving);
  });
});

describe("leader loss", () => {
  const f = useProxy(3);

  it('a stream with hasleader metadata ends with etcd\'s "no leader" error; others stay open', async () => {
    const md = new grpc.Metadata();
    md.set("hasleader", "true");
    const requiring = new WatchStream(f.client, md);
    const plain = new WatchStream(f.client);
    requiring.create({ key: "leader/k" });
    plain.create({ key: "leader/k" });
    await requiring.next();
    await plain.next();
    await loseQuorum(f.etcd);
    const status = await requiring.closed(20_000);
    assert.equal(status?.code, grpc.status.UNAVAILABLE);
    assert.equal(status?.details, "etcdserver: no leader");
    assert.equal(plain.ended, undefined, "a stream that did not ask for a leader stays open");
    plain.close();
  });
});

describe("compaction while the upstream watch was away", () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  let client: EtcdGrpcClient;
  before(async () => {
    etcd = await startEtcd(3);
    proxy = await startTestProxy(etcd.endpoints);
    client = new EtcdGrpcClient(proxy.address);
  });
  after(async () => {
    client?.close();
    await proxy?.close();
    await etcd?.stop();
  });

  it("every watcher of the dead shared watch is told, and new watchers get a fresh one", async () => {
    const key = "compact/k";
    const a = new WatchStream(client);
    const b = new WatchStream(client);
    a.create({ key });
    b.create({ key });
    await a.next();
    await b.next();
    // Freeze the member serving the watch, move etcd on and compact past the
    // watch's position, then let the watch fail over.
    const serving = memberInUse(proxy, etcd);
    const other = etcd.members.find((m) => m !== serving)!;
    const writer = new EtcdGrpcClient(other.endpoint);
    // Leadership moves off the member first, so the writes below need no
    // election and are done long before the proxy's watchdog notices the
    // frozen member (about 2 s): the watch is still away when etcd compacts.
    const status = async (endpoint: string) => {
      const c = new EtcdGrpcClient(endpoint);
      try {
        return (await c.unary("Maintenance", "Status", {})) as { leader: string; header: { member_id: string } };
      } finally {
        c.close();
      }
    };
    const servingStatus = await status(serving.endpoint);
    if (servingStatus.leader === servingStatus.header.member_id) {
      const target = (await status(other.endpoint)).header.member_id;
      const mover = new EtcdGrpcClient(serving.endpoint);
      await mover.unary("Maintenance", "MoveLeader", { targetID: target });
      mover.close();
    }
    serving.process!.kill("SIGSTOP");
    let last = 0;
    for (let i = 0; i < 3;) {
      try {
        last = Number(
          ((await writer.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(`${i}`) })) as any).header
            .revision,
        );
        i++;
      } catch {
        await sleep(100); // electing a new leader
      }
    }
    await writer.unary("KV", "Compact", { revision: String(last), physical: true });
    // Killed while still frozen: it never gets to send the proxy what it missed.
    await etcd.kill(serving);

    for (const s of [a, b]) {
      const [r] = await s.until((got) => got.length === 1, 20_000);
      assert.equal(r!.canceled, true);
      assert.equal(r!.compact_revision, String(last));
    }
    const c = new WatchStream(client);
    c.create({ key });
    assert.equal((await c.next()).created, true);
    const next = Number(
      ((await writer.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("new") })) as any).header.revision,
    );
    assert.deepEqual(revisions([await c.next()]), [next]);
    for (const s of [a, b, c]) s.close();
    writer.close();
  });
});

describe("slow consumers", () => {
  const f = useProxy(1, { proxyArgs: ["--watch-buffer-bytes=65536"] });

  /** One watcher on `key` read at once, and a raw stream with `watchers` watchers on it, all created. */
  async function fastAndSlow(key: string, watchers: number) {
    const fast = new WatchStream(f.client);
    fast.create({ key });
    await fast.next();
    const slow = new RawWatch(f.proxy.address);
    for (let i = 0; i < watchers; i++) slow.send({ key: Buffer.from(key) });
    const ids: string[] = [];
    for (let i = 0; i < watchers; i++) ids.push(String((await slow.next()).watchId));
    return { fast, slow, ids };
  }

  it("a client that stops reading holds up nobody and, once it reads again, catches up on every event", async () => {
    const key = "slow/k";
    const fast = new WatchStream(f.client);
    fast.create({ key });
    await fast.next();
    const slow = new RawWatch(f.proxy.address);
    slow.send({ key: Buffer.from(key) });
    await slow.next(); // Created
    slow.pause();

    const value = Buffer.alloc(8192, "v");
    const puts: number[] = [];
    for (let i = 0; i < 100; i++) {
      puts.push(Number(((await f.direct.unary("KV", "Put", { key: Buffer.from(key), value })) as any).header.revision));
    }
    const fastGot = await fast.until((r) => revisions(r).length === 100);
    assert.deepEqual(revisions(fastGot), puts, "the fast watcher got everything while the slow one was stuck");
    const metrics = await (await fetch(`http://${f.proxy.address}/proxy/metrics`)).text();
    assert.match(
      metrics,
      /^etcd_grpc_proxy_watch_slow_consumer_set_aside_total [1-9]/m,
      "the slow watcher was set aside",
    );

    slow.resume();
    const seen: number[] = [];
    let responses = 0;
    while (seen.length < puts.length) {
      const r = await slow.next();
      assert.equal(r.canceled, false);
      const revs = r.events.map((e) => Number(e.kv!.modRevision));
      assert.ok(Number(r.header!.revision) >= revs.at(-1)!, "a response's header is at least its last event");
      seen.push(...revs);
      responses++;
    }
    assert.deepEqual(seen, puts, "every event, once, in order, after catching up");
    // 100 events of 8 KiB: batched into responses of up to 64 KiB, as etcd
    // batches a watcher that fell behind.
    assert.ok(responses < puts.length / 4, `the backlog came batched: ${responses} responses`);
    slow.close();
    fast.close();
  });

  it("a stream's watchers set aside together all catch up from the history: every event, once, in order, batched", async () => {
    const key = "slow/many";
    const watchers = 10;
    const { fast, slow, ids } = await fastAndSlow(key, watchers);
    slow.pause();
    const replaysBefore = await metric(f.proxy.address, "etcd_grpc_proxy_watch_history_replays_total");

    // 10 watchers × 1 KiB an event: the stream's 64 KiB buffer is passed
    // within a few puts, while all 60 puts stay within the history.
    const value = Buffer.alloc(1024, "v");
    const puts: number[] = [];
    for (let i = 0; i < 60; i++) {
      puts.push(Number(((await f.direct.unary("KV", "Put", { key: Buffer.from(key), value })) as any).header.revision));
    }
    await fast.until((r) => revisions(r).length === puts.length);

    slow.resume();
    const seen = new Map(ids.map((id) => [id, [] as number[]]));
    let responses = 0;
    while ([...seen.values()].some((revs) => revs.length < puts.length)) {
      const r = await slow.next();
      assert.equal(r.canceled, false);
      const revs = r.events.map((e) => Number(e.kv!.modRevision));
      assert.ok(Number(r.header!.revision) >= revs.at(-1)!, "a response's header is at least its last event");
      seen.get(String(r.watchId))!.push(...revs);
      responses++;
    }
    for (const [id, revs] of seen) assert.deepEqual(revs, puts, `watcher ${id}: every event, once, in order`);
    assert.ok(
      responses < (watchers * puts.length) / 4,
      `${watchers * puts.length} events came in ${responses} responses`,
    );
    const replays = (await metric(f.proxy.address, "etcd_grpc_proxy_watch_history_replays_total")) - replaysBefore;
    assert.ok(replays > 0, "served from the history, not from new upstream watches");
    slow.close();
    fast.close();
  });

  it("watchers set aside whose next revision is compacted meanwhile get etcd's compaction cancel, as slow watchers direct do", async () => {
    const key = "slow/compacted";
    const watchers = 10;
    const { fast, slow } = await fastAndSlow(key, watchers);
    slow.pause();
    // As above: past the stream's buffer (set aside), within the history, which could replay them.
    const value = Buffer.alloc(1024, "v");
    const puts: number[] = [];
    for (let i = 0; i < 60; i++) {
      puts.push(Number(((await f.direct.unary("KV", "Put", { key: Buffer.from(key), value })) as any).header.revision));
    }
    await fast.until((r) => revisions(r).length === puts.length);
    // The history still holds these events, but etcd no longer does.
    const compactedAt = puts.at(-1)!;
    await f.direct.unary("KV", "Compact", { revision: compactedAt, physical: true });

    slow.resume();
    const seen = new Map<string, number[]>();
    const canceled = new Map<string, number>();
    while (canceled.size < watchers) {
      const r = await slow.next();
      const id = String(r.watchId);
      seen.set(id, [...(seen.get(id) ?? []), ...r.events.map((e) => Number(e.kv!.modRevision))]);
      if (r.canceled) canceled.set(id, Number(r.compactRevision));
    }
    for (const [id, compactRevision] of canceled) {
      assert.equal(compactRevision, compactedAt, `watcher ${id}: etcd's compaction cancel`);
      const revs = seen.get(id) ?? [];
      assert.ok(revs.length < puts.length, `watcher ${id}: only what reached the stream before it was set aside`);
      assert.deepEqual(revs, puts.slice(0, revs.length), `watcher ${id}: in order, without a gap, before the cancel`);
    }
    slow.close();
    fast.close();
  });
});

/** A counter's value from the proxy's own metrics. */
async function metric(address: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${address}/proxy/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

describe("auth identities", () => {
  const f = useProxy(1, {
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["role", "add", "reader"]);
      await ctl(via, ["role", "grant-permission", "reader", "read", "auth/", "--prefix"]);
      await ctl(via, ["user", "add", "alice", "--new-user-password=alicepw"]);
      await ctl(via, ["user", "grant-role", "alice", "reader"]);
      await ctl(via, ["user", "add", "bob", "--new-user-password=bobpw"]);
      await ctl(via, ["auth", "enable"]);
    },
  });

  it("a joiner is checked by etcd: a revoked permission refuses new watchers, as etcd does", async () => {
    const alice = await login(f.client, "alice", "alicepw");
    const bob = await login(f.client, "bob", "bobpw");
    const first = new WatchStream(f.client, alice);
    first.create({ key: "auth/k" });
    assert.equal((await first.next()).created, true);

    // etcd's own refusal, for comparison.
    const direct = new WatchStream(f.direct, bob);
    direct.create({ key: "auth/k" });
    const etcdRefusal = await direct.next();
    const refused = ["-1", true, etcdRefusal.cancel_reason];
    assert.match(etcdRefusal.cancel_reason, /permission denied/);

    const denied = new WatchStream(f.client, bob);
    denied.create({ key: "auth/k" });
    const refusal = await denied.next();
    assert.deepEqual([refusal.watch_id, refusal.canceled, refusal.cancel_reason], refused);

    const root = await login(f.client, "root", "rootpw");
    await f.client.unary(
      "Auth",
      "RoleRevokePermission",
      { role: "reader", key: Buffer.from("auth/"), range_end: Buffer.from("auth0") },
      root,
    );
    const late = new WatchStream(f.client, alice);
    late.create({ key: "auth/k" });
    const lateReply = await late.next();
    assert.deepEqual([lateReply.watch_id, lateReply.canceled, lateReply.cancel_reason], refused);
    for (const s of [first, direct, denied, late]) s.close();
  });
});

/**
 * A Watch stream over raw HTTP/2 that can stop reading, the way a stuck
 * client does: flow control then pushes back on the proxy.
 */
class RawWatch {
  private readonly session: http2.ClientHttp2Session;
  private readonly stream: http2.ClientHttp2Stream;
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private readonly replies: WatchResponse[] = [];
  private waiter: (() => void) | undefined;

  constructor(address: string) {
    this.session = http2.connect(`http://${address}`);
    this.session.on("error", () => {});
    this.stream = this.session.request({
      ":method": "POST",
      ":path": "/etcdserverpb.Watch/Watch",
      "content-type": "application/grpc",
      te: "trailers",
    });
    this.stream.on("error", () => {});
    this.stream.on("data", (chunk: Buffer) => {
      for (const m of this.decoder.push(chunk)) this.replies.push(fromBinary(WatchResponseSchema, m));
      this.waiter?.();
    });
  }

  send(createRequest: { key: Uint8Array }): void {
    const req = create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: createRequest } });
    this.stream.write(frame(toBinary(WatchRequestSchema, req)));
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  async next(): Promise<WatchResponse> {
    await eventually(() => this.replies.length > 0, "a raw watch reply");
    return this.replies.shift()!;
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }
}
