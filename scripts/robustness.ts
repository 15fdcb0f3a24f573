// `npm run robustness -- [--target HOST:PORT --etcd HOST:PORT[,HOST:PORT]] [--traffic etcd|kubernetes]
//                       [--seconds N] [--clients N] [--seed N] [--runs N]`
//
// Runs the robustness suite's traffic against a target and checks every
// history: linearizability of the KV operations, etcd's rules for the watch.
// With --target, against that endpoint (the proxy, etcd, any other), with
// the truth read from --etcd; the cluster must have no other writers while
// it runs. Without it, it starts a cluster and the proxy itself and runs
// etcd directly (the control) and the proxy. Prints a summary, then one
// JSON line last; exits 1 on any violation.
import { parseArgs } from "node:util";
import { startEtcd } from "../test/helpers/etcd.js";
import { startTestProxy } from "../test/helpers/proxy.js";
import { runRobustness, type RunReport } from "../test/robustness/runner.js";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    etcd: { type: "string" },
    traffic: { type: "string", default: "kubernetes" },
    seconds: { type: "string", default: "20" },
    clients: { type: "string", default: "8" },
    seed: { type: "string" },
    runs: { type: "string", default: "1" },
  },
});

const traffic = values.traffic;
if (traffic !== "etcd" && traffic !== "kubernetes") fail(`--traffic must be etcd or kubernetes, not ${traffic}`);
if ((values.target === undefined) !== (values.etcd === undefined)) fail("--target and --etcd go together");
const seconds = positive("seconds");
const clients = positive("clients");
const runs = positive("runs");

const reports: RunReport[] = [];
const run = async (name: string, target: string, etcd: string, seed: number | undefined) => {
  const report = await runRobustness({ target, etcd, traffic, seconds, clients, seed });
  reports.push(report);
  const verdict = report.linearizable === true && report.watchViolations.length === 0 ? "ok" : "VIOLATION";
  console.log(
    `${verdict}  ${name} (${target}), ${traffic} traffic, seed ${report.seed}: ${report.operations} operations ` +
      `(${report.unanswered} unanswered), linearizable: ${report.linearizable}; watch: ${report.watchEvents} events, ` +
      `${report.progressNotifications} progress notifications, ${report.watchViolations.length} violations`,
  );
  for (const v of report.watchViolations.slice(0, 10)) console.log(`    ${v.rule} at ${v.revision}: ${v.detail}`);
  if (report.linearizabilityFailure) console.log(`    ${JSON.stringify(report.linearizabilityFailure)}`);
};

for (let i = 0; i < runs; i++) {
  const seed = values.seed === undefined ? undefined : Number(values.seed) + i;
  if (values.target !== undefined) {
    await run("target", values.target, values.etcd!.split(",")[0]!, seed);
    continue;
  }
  const cluster = await startEtcd(1);
  const proxy = await startTestProxy(cluster.endpoints);
  try {
    await run("etcd (control)", cluster.members[0]!.endpoint, cluster.members[0]!.endpoint, seed);
    await run("proxy", proxy.address, cluster.members[0]!.endpoint, seed);
  } finally {
    await proxy.close();
    await cluster.stop();
  }
}

const violations = reports.flatMap((r) => r.watchViolations);
const linearizable = reports.every((r) => r.linearizable === true);
console.log(
  JSON.stringify({
    operations: reports.reduce((n, r) => n + r.operations, 0),
    watchEvents: reports.reduce((n, r) => n + r.watchEvents, 0),
    linearizable,
    watchViolations: violations.slice(0, 20),
    runs: reports.map((r) => ({
      target: r.target,
      seed: r.seed,
      linearizable: r.linearizable,
      watchViolations: r.watchViolations.length,
    })),
  }),
);
process.exit(linearizable && violations.length === 0 ? 0 : 1);

function positive(name: "seconds" | "clients" | "runs"): number {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive whole number`);
  return n;
}

function fail(message: string): never {
  console.error(`robustness: ${message}`);
  process.exit(2);
}
