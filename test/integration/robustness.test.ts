// The robustness suite's short pass, on a 3-member cluster: etcd-like and
// Kubernetes-like traffic from 8 grpc-js clients against etcd itself (the
// control) and the proxy in each of its modes, each run under one fault, so
// that every fault is met once. Every KV history is checked for
// linearizability, every serializable read against the revision it claims,
// and both watches of each run against etcd's watch rules, the truth read
// from etcd directly. `npm run robustness` runs every mode under every fault,
// as long as asked.
//
// Lane-independent: npm test runs it in the fast lane only, since
// what it checks is above the lanes; it runs on both etcd lines.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ETCD_LINE, ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { proxyMetric } from "../helpers/metrics.js";
import type { FaultName } from "../robustness/faults.js";
import { harnessEtcd, problems, runOn, summary } from "../robustness/suite.js";
import { MODE_NAMES, startTarget, type Mode } from "../robustness/targets.js";

const SECONDS = 4;

const RUNS: Array<{ mode: Mode; traffic: "etcd" | "kubernetes"; fault: FaultName }> = [
  { mode: "etcd", traffic: "kubernetes", fault: "freeze" },
  { mode: "etcd", traffic: "etcd", fault: "kill-leader" },
  { mode: "plain", traffic: "kubernetes", fault: "kill-in-use" },
  { mode: "plain", traffic: "etcd", fault: "compaction" },
  { mode: "plain", traffic: "kubernetes", fault: "restart-proxy" },
  { mode: "namespace", traffic: "kubernetes", fault: "kill-leader" },
  { mode: "ordering", traffic: "etcd", fault: "leader-move" },
  { mode: "leasing", traffic: "etcd", fault: "slow-client" },
  // The consistent cache under a kill of its member on one etcd line and compaction on the other
  // (npm run robustness runs it under every fault on both).
  ETCD_LINE === "3.5"
    ? { mode: "consistent", traffic: "kubernetes", fault: "kill-in-use" }
    : { mode: "consistent", traffic: "etcd", fault: "compaction" },
];

describe(`robustness, short pass, etcd ${ETCD_VERSION}`, () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcd(3);
  });
  after(() => cluster?.stop());

  for (const { mode, traffic, fault } of RUNS) {
    it(`${MODE_NAMES[mode]}: ${traffic} traffic under ${fault} is linearizable, its reads true, its watches whole`, async () => {
      const target = await startTarget(mode, cluster);
      try {
        const report = await runOn(target, harnessEtcd(cluster), { traffic, seconds: SECONDS, fault });
        const found = problems(report, target, ETCD_VERSION);
        assert.deepEqual(found, [], summary(report, MODE_NAMES[mode], fault));
        if (traffic === "kubernetes")
          assert.ok(report.progressNotifications > 5, "progress was asked for and answered");
        // Some reads were checked: how many depends on the fault (a member frozen for 3 of the 4 s
        // holds the control's clients there) and on the machine's load, not on what is checked.
        assert.ok(report.serializableReads > 0, `${report.serializableReads} serializable reads`);
        if (mode === "consistent") {
          const fromMemory = await proxyMetric(target.addresses[0]!, "etcd_grpc_proxy_consistent_cache_answers_total");
          assert.ok(fromMemory > 0, `${fromMemory} reads answered from the replica`);
        }
      } finally {
        await target.close();
      }
    });
  }
});
