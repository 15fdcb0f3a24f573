// A watch soak against a real 3-member cluster (issue 22): puts flow, three
// streams ask for progress every 100 ms, watchers keep joining from past
// revisions, and the member the proxy uses is killed and restarted. At the
// end every watcher must have exactly etcd's events of its range from its
// start revision: none missing, none repeated, in order.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the watch hub is above the lanes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memberInUse, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { WatchStream } from "../helpers/watch.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// npm test runs it for 15 s; SOAK_MS=120000 soaks longer.
const SOAK_MS = Number(process.env.SOAK_MS ?? 15_000);
const PREFIX = "/soak/";
const END = "/soak0";

/** Every revision of a watcher's events, in the order they arrived. */
const revisionsOf = (w: WatchStream) => w.replies.flatMap((r) => r.events.map((e) => Number(e.kv!.mod_revision)));

describe("watch soak: progress requests, late joiners and a member killed", () => {
  const f = useProxy(3);

  it(`every watcher gets every event of its range once, in order (${SOAK_MS / 1000} s)`, async () => {
    const writers = f.etcd.members.map((m) => new EtcdGrpcClient(m.endpoint));
    const watchers: Array<{ stream: WatchStream; from: number; key: string | undefined }> = [];
    const naggers: WatchStream[] = [];
    let running = true;
    let lastRev = 1;
    try {
      // Puts go straight to the members, whichever answers.
      const puts = (async () => {
        for (let i = 0; running; i++) {
          try {
            const r = (await writers[i % writers.length]!.unary(
              "KV",
              "Put",
              { key: Buffer.from(`${PREFIX}${i % 7}`), value: Buffer.from(`${i}`) },
              undefined,
              2_000,
            )) as { header: { revision: string } };
            lastRev = Math.max(lastRev, Number(r.header.revision));
          } catch {
            // a member down or an election: the next put goes elsewhere
          }
          await sleep(20);
        }
      })();
      // Three streams ask for progress every 100 ms, each watching something else.
      for (let i = 0; i < 3; i++) {
        const nagger = new WatchStream(f.client);
        nagger.create({ key: `/elsewhere/${i}` });
        naggers.push(nagger);
      }
      const nagging = setInterval(() => naggers.forEach((n) => n.requestProgress()), 100);
      // Watchers join every half second, on the prefix or on one key, from up
      // to 600 revisions back: beyond the proxy's history (256) they need an
      // upstream watch of their own, which etcd catches up while progress
      // requests keep coming.
      const joins = (async () => {
        for (let i = 0; running; i++) {
          const stream = new WatchStream(f.client);
          const from = Math.max(1, lastRev - Math.floor(Math.random() * 600));
          const key = i % 2 ? `${PREFIX}${i % 7}` : undefined;
          if (key) stream.create({ key, start_revision: from });
          else stream.create({ key: PREFIX, range_end: END, start_revision: from });
          watchers.push({ stream, from, key });
          await sleep(500);
        }
      })();
      // A third of the way in, the member in use is killed; it comes back a third later.
      await sleep(SOAK_MS / 3);
      const victim = memberInUse(f.proxy, f.etcd);
      await f.etcd.kill(victim);
      await sleep(SOAK_MS / 3);
      await f.etcd.restart(victim);
      await sleep(SOAK_MS / 3);
      running = false;
      clearInterval(nagging);
      await Promise.all([puts, joins]);

      // Every key gets a last put, so each watcher has an end to wait for.
      const lastOf = new Map<string, number>();
      for (let k = 0; k < 7; k++) {
        const r = (await writers[0]!.unary("KV", "Put", {
          key: Buffer.from(`${PREFIX}${k}`),
          value: Buffer.from(""),
        })) as { header: { revision: string } };
        lastOf.set(`${PREFIX}${k}`, Number(r.header.revision));
      }
      const finalRev = Math.max(...lastOf.values());
      const endOf = (w: { key: string | undefined }) => (w.key ? lastOf.get(w.key)! : finalRev);
      // etcd's own account of the range: a direct watch from revision 1.
      const direct = new EtcdGrpcClient(f.etcd.members[0]!.endpoint);
      writers.push(direct); // closed with the others
      const truth = new WatchStream(direct);
      truth.create({ key: PREFIX, range_end: END, start_revision: 1 });
      const until = Date.now() + 30_000;
      while (revisionsOf(truth).at(-1) !== finalRev) {
        assert.ok(Date.now() < until, "etcd's own watch did not reach the last puts");
        await sleep(100);
      }
      truth.close();
      while (!watchers.every((w) => revisionsOf(w.stream).at(-1) === endOf(w))) {
        const behind = watchers.filter((w) => revisionsOf(w.stream).at(-1) !== endOf(w)).length;
        assert.ok(Date.now() < until + 30_000, `${behind} watchers never reached the last puts`);
        await sleep(100);
      }
      const all = truth.replies.flatMap((r) =>
        r.events.map((e) => ({ rev: Number(e.kv!.mod_revision), key: e.kv!.key.toString() })),
      );
      assert.ok(watchers.length > 20, "watchers joined throughout");
      assert.ok(all.length > 200, `only ${all.length} events`);
      for (const [i, { stream, from, key }] of watchers.entries()) {
        assert.equal(stream.ended, undefined, `watcher ${i}'s stream ended`);
        assert.deepEqual(
          revisionsOf(stream),
          all.filter((e) => e.rev >= from && (key === undefined || e.key === key)).map((e) => e.rev),
          `watcher ${i} on ${key ?? PREFIX} from ${from}: missing, repeated or out of order`,
        );
      }
    } finally {
      running = false;
      for (const w of watchers) w.stream.close();
      for (const n of naggers) n.close();
      for (const c of writers) c.close();
    }
  });
});
