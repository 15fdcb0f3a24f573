// npm run robustness -- [--target HOST:PORT[,HOST:PORT] --etcd HOST:PORT[,HOST:PORT]]
//                       [--modes etcd,plain,namespace,ordering,leasing,consistent] [--faults none,kill-in-use,...]
//                       [--traffic etcd|kubernetes|both] [--seconds N] [--clients N] [--seed N] [--runs N]
//                       [--value-bytes N]
//                       [--reads-may-lag] [--dump DIR]
//
// Runs the robustness suite's traffic and checks every history: the KV
// operations for linearizability, serializable reads against the revision
// they claim, the watches against etcd's rules. With --target, against that
// endpoint (the proxy, etcd, anything else), the truth read from --etcd; its
// keys go under robustness/, and writers elsewhere in the keyspace are
// allowed; only the faults that need no process (compaction, slow-client)
// apply. Without it, it starts a 3-member cluster and runs every mode under
// every fault. Prints a line per run, then one JSON line last; exits 1 on any
// violation, 2 on bad arguments.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ETCD_VERSION, startEtcd } from "../test/helpers/etcd.js";
import { EtcdGrpcClient } from "../test/helpers/grpc-client.js";
import { proxyMetric } from "../test/helpers/metrics.js";
import { FAULT_NAMES, faultApplies } from "../test/robustness/faults.js";
import type { RunReport } from "../test/robustness/runner.js";
import { harnessEtcd, problems, runOn, summary } from "../test/robustness/suite.js";
import { externalTarget, MODE_NAMES, MODES, startTarget, type Mode, type Target } from "../test/robustness/targets.js";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    etcd: { type: "string" },
    modes: { type: "string", default: MODES.join(",") },
    faults: { type: "string", default: ["none", ...FAULT_NAMES].join(",") },
    traffic: { type: "string", default: "both" },
    seconds: { type: "string", default: "20" },
    clients: { type: "string", default: "8" },
    "value-bytes": { type: "string", default: "0" },
    seed: { type: "string" },
    runs: { type: "string", default: "1" },
    "reads-may-lag": { type: "boolean", default: false },
    dump: { type: "string" },
  },
});

if ((values.target === undefined) !== (values.etcd === undefined)) fail("--target and --etcd go together");
const traffics = values.traffic === "both" ? (["etcd", "kubernetes"] as const) : [values.traffic];
for (const t of traffics) if (t !== "etcd" && t !== "kubernetes") fail(`--traffic must be etcd, kubernetes or both`);
const modes = listOf(values.modes, MODES, "modes");
const faults = listOf(values.faults, ["none", ...FAULT_NAMES] as const, "faults");
const seconds = positive("seconds");
const clients = positive("clients");
const valueBytes = Number(values["value-bytes"]);
if (!Number.isInteger(valueBytes) || valueBytes < 0) fail("--value-bytes must be a whole number");
const runs = positive("runs");
if (values.dump) mkdirSync(values.dump, { recursive: true });

const reports: Array<{ report: RunReport; problems: string[] }> = [];
let n = 0;
let coalescedRanges = 0;
async function run(target: Target, etcd: Parameters<typeof runOn>[1], version: string, name: string) {
  for (const traffic of traffics as Array<"etcd" | "kubernetes">) {
    for (const f of faults) {
      const fault = f === "none" ? undefined : f;
      const context = { restartTarget: target.restart, cluster: target.memberInUse && etcd.cluster };
      if (fault && !faultApplies(fault, context)) continue;
      const seed = values.seed === undefined ? undefined : Number(values.seed) + n;
      const dumpTo = values.dump ? join(values.dump, `run-${n}.json`) : undefined;
      n++;
      const began = performance.now();
      const report = await runOn(target, etcd, { traffic, seconds, clients, valueBytes, seed, fault, dumpTo });
      const found = problems(report, target, version);
      reports.push({ report, problems: found });
      // Ranges that shared a call to etcd, on the proxies the run used (none for etcd itself).
      for (const address of target.addresses) {
        const shared = await proxyMetric(address, "etcd_grpc_proxy_coalesced_ranges_total").catch(() => NaN);
        if (Number.isFinite(shared)) coalescedRanges += shared;
      }
      const took = `${((performance.now() - began) / 1000).toFixed(0)} s`;
      console.log(`${found.length === 0 ? "ok        " : "VIOLATION "} ${summary(report, name, fault)} (${took})`);
      for (const p of found) console.log(`    ${p}`);
    }
  }
}

for (let i = 0; i < runs; i++) {
  if (values.target !== undefined) {
    const endpoints = values.etcd!.split(",");
    await run(
      externalTarget(values.target.split(","), values["reads-may-lag"]),
      { endpoints },
      await versionOf(endpoints[0]!),
      values.target,
    );
    continue;
  }
  const cluster = await startEtcd(3);
  try {
    for (const mode of modes as Mode[]) {
      const target = await startTarget(mode, cluster);
      try {
        await run(target, harnessEtcd(cluster), ETCD_VERSION, MODE_NAMES[mode]);
      } finally {
        await target.close();
      }
    }
  } finally {
    await cluster.stop();
  }
}

const all = reports.map((r) => r.report);
const violations = all.flatMap((r) => r.watchViolations);
const passed = reports.every((r) => r.problems.length === 0);
console.log(
  JSON.stringify({
    operations: all.reduce((s, r) => s + r.operations, 0),
    watchEvents: all.reduce((s, r) => s + r.watchEvents, 0),
    linearizable: all.every((r) => r.linearizable === true),
    watchViolations: violations.slice(0, 20),
    serializableReads: all.reduce((s, r) => s + r.serializableReads, 0),
    staleReads: all.reduce((s, r) => s + r.staleReads, 0),
    untrueReads: all.reduce((s, r) => s + r.untrueReads.length, 0),
    coalescedRanges,
    passed,
    runs: reports.map(({ report, problems }) => ({
      targets: report.targets,
      traffic: report.traffic,
      seed: report.seed,
      operations: report.operations,
      problems: problems.length,
    })),
  }),
);
process.exit(passed ? 0 : 1);

async function versionOf(endpoint: string): Promise<string> {
  const etcd = new EtcdGrpcClient(endpoint);
  try {
    return String(((await etcd.unary("Maintenance", "Status", {})) as { version: string }).version);
  } finally {
    etcd.close();
  }
}

function listOf<T extends string>(given: string, known: readonly T[], name: string): T[] {
  const list = given.split(",").filter(Boolean);
  for (const item of list) if (!known.includes(item as T)) fail(`--${name}: ${item} is not one of ${known.join(", ")}`);
  return list as T[];
}

function positive(name: "seconds" | "clients" | "runs"): number {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < 1) fail(`--${name} must be a positive whole number`);
  return value;
}

function fail(message: string): never {
  console.error(`robustness: ${message}`);
  process.exit(2);
}
