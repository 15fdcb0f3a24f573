// A Kubernetes-like client (a watch with a progress request every 100 ms)
// and a lease keep-alive, through member kills, restarts and freezes: the proxy must
// hold no pile of abort listeners on any signal. Node warns
// (MaxListenersExceededWarning) past ten listeners on one signal; a chaos
// run showed the warning once progress requests went unanswered during a
// failover, each waiting on the client's signal with a listener of its own.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { memberInUse, useProxy } from "../helpers/fixture.js";
import { eventually } from "../helpers/watch.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("abort listeners through failovers", () => {
  const f = useProxy(3);
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  before(() => process.on("warning", onWarning));
  after(() => process.off("warning", onWarning));

  it("a watch asking for progress every 100 ms and a keep-alive stream, through kills and freezes, raise no warning", async () => {
    const watch = f.client.stream("Watch", "Watch");
    let progress = 0;
    watch.on("data", (r: { watch_id: string; events?: unknown[] }) => {
      if (r.watch_id === "-1") progress++;
    });
    watch.on("error", () => {});
    watch.write({ create_request: { key: Buffer.from("chaos/"), range_end: Buffer.from("chaos0") } });
    const lease = (await f.client.unary("Lease", "LeaseGrant", { TTL: 30 })) as { ID: string };
    const keepAlive = f.client.stream("Lease", "LeaseKeepAlive");
    keepAlive.on("data", () => {});
    keepAlive.on("error", () => {});
    let running = true;
    const asking = (async () => {
      while (running) {
        watch.write({ progress_request: {} });
        keepAlive.write({ ID: lease.ID });
        await sleep(100);
      }
    })();
    try {
      for (let round = 0; round < 2; round++) {
        const victim = memberInUse(f.proxy, f.etcd);
        await f.etcd.kill(victim);
        await sleep(1500);
        await f.etcd.restart(victim);
        await sleep(500);
        // Frozen (SIGSTOP): a hang without closed sockets, where nothing is answered for a while.
        const frozen = memberInUse(f.proxy, f.etcd);
        frozen.process!.kill("SIGSTOP");
        await sleep(2000);
        frozen.process!.kill("SIGCONT");
        await sleep(500);
      }
      // etcd 3.5.22+ and 3.4.38+ defer a progress answer while any watch of the stream starts past the
      // current revision; the proxy resumes a quiet watch after a failover from the revision after the
      // last it saw, which is such a watch until something is written. One write lets etcd answer.
      await f.client.unary("KV", "Put", { key: Buffer.from("elsewhere"), value: Buffer.from("v") });
      const before = progress;
      await eventually(() => progress > before, "progress answered after the last failover", 15_000);
    } finally {
      running = false;
      await asking;
      watch.end();
      keepAlive.end();
    }
    assert.deepEqual(
      warnings.filter((w) => /MaxListeners/.test(w)),
      [],
    );
  });
});
