// Watch through the proxy: etcd's semantics per client stream (compared
// reply for reply with etcd itself), and coalescing onto shared upstream
// watches, counted by etcd's own watcher metric.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_LINE } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import {
  WatchStream,
  etcdMetric,
  eventually,
  revisions,
  type CreateOptions,
  type WatchReply,
} from "../helpers/watch.js";

const WATCHERS = "etcd_debugging_mvcc_watcher_total";

/** One step of a scenario played against etcd and against the proxy. */
type Step =
  | { create: CreateOptions; replies: number }
  | { cancel: number; replies: number }
  | { progress: true; replies: number }
  | { put: string; value: string; replies: number }
  | { del: string; replies: number }
  | { halfClose: true };

describe("Watch: etcd's semantics, reply for reply", () => {
  const f = useProxy(1);

  /** Plays `steps` on a fresh stream; keys are prefixed so runs do not meet. Revisions are made relative. */
  async function play(client: EtcdGrpcClient, prefix: string, steps: Step[]): Promise<unknown[]> {
    const base = Number(((await f.direct.unary("KV", "Range", { key: Buffer.from("\0") })) as any).header.revision);
    const stream = new WatchStream(client);
    const out: unknown[] = [];
    const k = (key: string | Buffer | undefined) =>
      key === undefined ? undefined : Buffer.concat([Buffer.from(prefix), Buffer.from(key)]);
    try {
      for (const step of steps) {
        if ("create" in step) {
          const c = step.create;
          const start =
            c.start_revision === undefined || Number(c.start_revision) <= 0
              ? c.start_revision
              : base + Number(c.start_revision);
          stream.create({
            ...c,
            key: k(c.key)!,
            range_end: c.range_end === undefined ? undefined : k(c.range_end),
            start_revision: start,
          });
        } else if ("cancel" in step) stream.cancel(step.cancel);
        else if ("progress" in step) stream.requestProgress();
        else if ("put" in step)
          await f.direct.unary("KV", "Put", { key: k(step.put), value: Buffer.from(step.value), prev_kv: false });
        else if ("del" in step) await f.direct.unary("KV", "DeleteRange", { key: k(step.del) });
        else if ("halfClose" in step) stream.endRequests();
        // etcd orders replies per watcher, not across watchers of a stream.
        const replies: WatchReply[] = [];
        for (let i = 0; i < ("replies" in step ? step.replies : 0); i++) replies.push(await stream.next());
        replies.sort((a, b) => Number(a.watch_id) - Number(b.watch_id));
        out.push(...replies.map((r) => normalize(r, base, prefix)));
      }
      // Nothing else may arrive.
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(stream.replies.length, out.length, "unexpected extra replies");
      return out;
    } finally {
      stream.close();
    }
  }

  async function sameAsEtcd(name: string, steps: Step[]): Promise<unknown[]> {
    const direct = await play(f.direct, `${name}/d/`, steps);
    const proxied = await play(f.client, `${name}/p/`, steps);
    assert.deepEqual(proxied, direct);
    return proxied;
  }

  it("watch IDs: auto from 0, client-chosen honoured, duplicates and empty ranges refused, unknown cancels ignored", async () => {
    const replies = await sameAsEtcd("ids", [
      { create: { key: "a" }, replies: 1 },
      { create: { key: "b", watch_id: 5 }, replies: 1 },
      { create: { key: "c", watch_id: 5 }, replies: 1 },
      { create: { key: "d" }, replies: 1 },
      { create: { key: "e", range_end: "a" }, replies: 1 },
      { cancel: 99, replies: 0 },
      { cancel: 5, replies: 1 },
      { put: "a", value: "1", replies: 1 },
      { create: { key: "f" }, replies: 1 },
      { progress: true, replies: 1 },
    ]);
    assert.equal(replies.length, 9);
  });

  it("filters and prev_kv apply per watcher, events keep etcd's shape", async () => {
    await sameAsEtcd("filters", [
      { create: { key: "k", prev_kv: true }, replies: 1 },
      { create: { key: "k", filters: ["NOPUT"] }, replies: 1 },
      { create: { key: "k", filters: ["NODELETE"] }, replies: 1 },
      { create: { key: "k", range_end: "l", prev_kv: true }, replies: 1 },
      { put: "k", value: "1", replies: 3 },
      { put: "k", value: "2", replies: 3 },
      { del: "k", replies: 3 },
    ]);
  });

  it("a watch from a compacted revision is created, then canceled with the compact revision", async () => {
    const key = Buffer.from("compacted/k");
    const first = await f.direct.unary("KV", "Put", { key, value: Buffer.from("1") });
    await f.direct.unary("KV", "Put", { key, value: Buffer.from("2") });
    const last = await f.direct.unary("KV", "Put", { key, value: Buffer.from("3") });
    const lastRev = (last as any).header.revision;
    await f.direct.unary("KV", "Compact", { revision: lastRev, physical: true });
    const runs: unknown[][] = [];
    for (const client of [f.direct, f.client]) {
      const s = new WatchStream(client);
      s.create({ key, start_revision: (first as any).header.revision });
      runs.push([await s.next(), await s.next()].map((r) => ({ ...r, header: null })));
      s.close();
    }
    assert.deepEqual(runs[1], runs[0]);
    const [created, canceled] = runs[1] as WatchReply[];
    assert.equal(created!.created, true);
    assert.equal(canceled!.canceled, true);
    assert.equal(canceled!.compact_revision, String(lastRev));
  });

  it("fragment: a large response is split as etcd splits it", async () => {
    const big = Buffer.alloc(1024 * 1024, "x");
    const key = Buffer.from("fragment/k");
    const first = await f.direct.unary("KV", "Put", { key, value: big });
    await f.direct.unary("KV", "Put", { key, value: big });
    await f.direct.unary("KV", "Put", { key, value: big });
    const shapes: unknown[] = [];
    for (const client of [f.direct, f.client]) {
      const s = new WatchStream(client);
      s.create({ key, start_revision: (first as any).header.revision, prev_kv: true, fragment: true });
      await s.next(); // Created
      const pieces = await s.until((got) => got.length > 0 && !got[got.length - 1]!.fragment);
      shapes.push(pieces.map((p) => ({ fragment: p.fragment, events: revisions([p]) })));
      s.close();
    }
    assert.deepEqual(shapes[1], shapes[0]);
    assert.ok((shapes[1] as unknown[]).length > 1, "etcd split the response");
  });

  it("a start revision below zero gets etcd's answer: a compaction cancel (3.4), a refusal (3.5)", async () => {
    const answers = async (client: EtcdGrpcClient) => {
      const s = new WatchStream(client);
      try {
        s.create({ key: "negative", start_revision: -1 });
        const got = await s.until((replies) => replies.some((r) => r.canceled));
        return got.map((r) => ({
          id: r.watch_id,
          created: r.created,
          canceled: r.canceled,
          reason: r.cancel_reason,
          compactRevision: r.compact_revision,
        }));
      } finally {
        s.close();
      }
    };
    const direct = await answers(f.direct);
    assert.deepEqual(await answers(f.client), direct);
    if (ETCD_LINE === "3.5" && direct.length === 1) {
      assert.equal(direct[0]!.reason, "etcdserver: mvcc: required revision has been compacted");
    }
  });

  it("a half-closed stream stays open and keeps delivering events, as with etcd", async () => {
    await sameAsEtcd("halfclose", [
      { create: { key: "k" }, replies: 1 },
      { halfClose: true },
      { put: "k", value: "after", replies: 1 },
    ]);
  });

  it("progress requests are answered with the current revision once everything before it was sent", async () => {
    const s = new WatchStream(f.client);
    s.create({ key: "progress/quiet" });
    await s.next();
    // Writes elsewhere move etcd's revision; the quiet watcher has missed nothing up to it.
    const put = await f.direct.unary("KV", "Put", { key: Buffer.from("progress/other"), value: Buffer.from("v") });
    s.requestProgress();
    const r = await s.next();
    s.close();
    assert.equal(r.watch_id, "-1");
    assert.equal(r.header!.revision, (put as any).header.revision);
  });
});

describe("Watch coalescing", () => {
  const f = useProxy(1);

  it("1,000 client watchers on one key over 10 connections cost etcd one watcher, and each gets every event", async () => {
    const clientUrl = f.etcd.members[0]!.clientUrl;
    const before = await etcdMetric(clientUrl, WATCHERS);
    const clients = Array.from({ length: 10 }, () => new EtcdGrpcClient(f.proxy.address));
    const streams: WatchStream[] = [];
    try {
      for (const client of clients) for (let s = 0; s < 10; s++) streams.push(new WatchStream(client));
      for (const s of streams) for (let w = 0; w < 10; w++) s.create({ key: "fan/k" });
      for (const s of streams) await s.until((got) => got.length === 10, 20_000); // every Created
      const created = streams.flatMap((s) => s.replies.filter((r) => r.created).map((r) => r.watch_id));
      assert.equal(created.length, 1000);
      assert.equal(await etcdMetric(clientUrl, WATCHERS), before + 1);

      const puts: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await f.direct.unary("KV", "Put", { key: Buffer.from("fan/k"), value: Buffer.from(`v${i}`) });
        puts.push(Number((r as any).header.revision));
      }
      for (const s of streams) {
        const events = await s.until((got) => revisions(got).length === 30, 20_000);
        for (let w = 0; w < 10; w++) {
          assert.deepEqual(revisions(events.filter((r) => r.watch_id === String(w))), puts);
        }
      }
      const metrics = await (await fetch(`http://${f.proxy.address}/proxy/metrics`)).text();
      assert.match(metrics, /^etcd_grpc_proxy_watchers_coalescing_total 999$/m);
      assert.match(metrics, /^etcd_grpc_proxy_events_coalescing_total 2997$/m);
      assert.match(metrics, /^etcd_grpc_proxy_watch_upstream_watchers 1$/m);
    } finally {
      for (const s of streams) s.close();
      for (const c of clients) c.close();
    }
    // The last watcher out releases the upstream watch.
    await eventually(async () => (await etcdMetric(clientUrl, WATCHERS)) === before, "etcd's watcher to be released");
  });

  it("a late watcher asking for an older revision is served from history, with no new upstream watcher", async () => {
    const clientUrl = f.etcd.members[0]!.clientUrl;
    const key = Buffer.from("hist/k");
    const first = new WatchStream(f.client);
    first.create({ key });
    await first.next();
    const before = await etcdMetric(clientUrl, WATCHERS);
    const puts: number[] = [];
    for (let i = 0; i < 5; i++) {
      puts.push(
        Number(((await f.direct.unary("KV", "Put", { key, value: Buffer.from(`${i}`) })) as any).header.revision),
      );
    }
    await first.until((got) => revisions(got).length === 5);

    const late = new WatchStream(f.client);
    late.create({ key, start_revision: puts[1], prev_kv: true });
    const created = await late.next();
    assert.equal(created.created, true);
    const replayed = await late.until((got) => revisions(got).length === 4);
    assert.deepEqual(revisions(replayed), puts.slice(1));
    assert.equal(replayed[0]!.events[0]!.prev_kv!.value.toString(), "0", "prev_kv kept for a watcher that asked");
    assert.equal(await etcdMetric(clientUrl, WATCHERS), before, "no new upstream watcher");

    // Both keep receiving the same live events.
    const next = Number(
      ((await f.direct.unary("KV", "Put", { key, value: Buffer.from("live") })) as any).header.revision,
    );
    assert.deepEqual(revisions(await late.until((got) => revisions(got).length === 1)), [next]);
    assert.deepEqual(revisions(await first.until((got) => revisions(got).length === 1)), [next]);
    first.close();
    late.close();
  });

  it("a watcher older than the history gets its own upstream watch, which merges once caught up", async () => {
    const clientUrl = f.etcd.members[0]!.clientUrl;
    const key = Buffer.from("merge/k");
    const start = Number(
      ((await f.direct.unary("KV", "Put", { key, value: Buffer.from("start") })) as any).header.revision,
    );
    for (let i = 0; i < 300; i++) await f.direct.unary("KV", "Put", { key, value: Buffer.from(`${i}`) });
    const first = new WatchStream(f.client);
    first.create({ key });
    await first.next();
    const baseline = await etcdMetric(clientUrl, WATCHERS);

    const old = new WatchStream(f.client);
    old.create({ key, start_revision: start });
    await old.next();
    const caughtUp = await old.until((got) => revisions(got).length === 301, 20_000);
    assert.deepEqual(
      revisions(caughtUp),
      Array.from({ length: 301 }, (_, i) => start + i),
    );

    const live = Number(
      ((await f.direct.unary("KV", "Put", { key, value: Buffer.from("live") })) as any).header.revision,
    );
    assert.deepEqual(revisions(await old.until((got) => revisions(got).length === 1)), [live]);
    assert.deepEqual(revisions(await first.until((got) => revisions(got).length === 1)), [live]);
    await eventually(
      async () => (await etcdMetric(clientUrl, WATCHERS)) === baseline,
      "the two upstream watches to merge",
    );
    const after = Number(
      ((await f.direct.unary("KV", "Put", { key, value: Buffer.from("merged") })) as any).header.revision,
    );
    assert.deepEqual(revisions(await old.until((got) => revisions(got).length === 1)), [after]);
    assert.deepEqual(revisions(await first.until((got) => revisions(got).length === 1)), [after]);
    first.close();
    old.close();
  });

  it("a watcher from now joins a live shared watch at once; its Created says where it starts", async () => {
    const key = Buffer.from("join/k");
    const first = new WatchStream(f.client);
    first.create({ key });
    await first.next();
    const put = Number(((await f.direct.unary("KV", "Put", { key, value: Buffer.from("1") })) as any).header.revision);
    await first.next();
    const second = new WatchStream(f.client);
    second.create({ key });
    const created = await second.next();
    assert.equal(created.created, true);
    assert.equal(created.watch_id, "0");
    assert.equal(
      Number(created.header!.revision),
      put,
      "Created: everything up to this revision is behind the watcher",
    );
    const next = Number(((await f.direct.unary("KV", "Put", { key, value: Buffer.from("2") })) as any).header.revision);
    assert.deepEqual(revisions([await second.next()]), [next]);
    first.close();
    second.close();
  });

  it("streams with different auth identity never share an upstream watch", async () => {
    const clientUrl = f.etcd.members[0]!.clientUrl;
    // Once the earlier tests' streams are gone, the proxy holds no watcher of its own.
    await eventually(async () => (await etcdMetric(clientUrl, WATCHERS)) === 0, "an idle proxy to hold no watchers");
    const before = 0;
    const plain = new WatchStream(f.client);
    const md = new grpc.Metadata();
    md.set("hasleader", "true");
    const leader = new WatchStream(f.client, md);
    plain.create({ key: "ident/k" });
    leader.create({ key: "ident/k" });
    await plain.next();
    await leader.next();
    assert.equal(await etcdMetric(clientUrl, WATCHERS), before + 2);
    plain.close();
    leader.close();
  });
});

describe("Watch: periodic progress notifications", () => {
  const f = useProxy(1, { etcdArgs: ["--experimental-watch-progress-notify-interval=500ms"] });

  it("reach the watchers that asked for them, and only those, as with etcd", async () => {
    const s = new WatchStream(f.client);
    s.create({ key: "notify/k", progress_notify: true });
    s.create({ key: "notify/k" });
    await s.until((r) => r.length === 2);
    const put = Number(
      ((await f.direct.unary("KV", "Put", { key: Buffer.from("notify/other"), value: Buffer.from("v") })) as any).header
        .revision,
    );
    const notices = await s.until((r) => r.filter((x) => x.events.length === 0).length >= 2, 10_000);
    s.close();
    for (const n of notices.filter((x) => x.events.length === 0)) {
      assert.equal(n.watch_id, "0", "only the watcher that asked gets notifications");
      assert.equal(n.created || n.canceled, false);
      assert.ok(Number(n.header!.revision) >= put, "a notification carries etcd's current revision");
    }
  });
});

/** A reply with header fields that differ between runs removed and revisions made relative. */
function normalize(r: WatchReply, base: number, prefix: string) {
  const rel = (rev: string) => (Number(rev) === 0 ? 0 : Number(rev) - base);
  const key = (b: Buffer) => b.toString().replace(prefix, "");
  return {
    watch_id: r.watch_id,
    created: r.created,
    canceled: r.canceled,
    compact_revision: rel(r.compact_revision),
    cancel_reason: r.cancel_reason,
    fragment: r.fragment,
    revision: r.header ? rel(r.header.revision) : null,
    events: r.events.map((e) => ({
      type: e.type,
      key: key(e.kv!.key),
      value: e.kv!.value.toString(),
      mod: rel(e.kv!.mod_revision),
      prev: e.prev_kv ? e.prev_kv.value.toString() : null,
    })),
  };
}
