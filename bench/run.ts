// `npm run bench`: every scenario against etcd direct, etcd's Go proxy and
// this proxy, side by side on loopback, in interleaved rounds. Prints
// Markdown tables with ratios to the Go proxy and writes the raw numbers as
// JSON. See bench/README.md for how to read them.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  idleRss,
  prepare,
  runLeaseScenario,
  runUnaryScenario,
  runWatchScenario,
  measureJoinLag,
  measureCacheStaleness,
  measureIdleWatchers,
  type CacheStaleness,
  type IdleWatcherCost,
  type JoinLag,
  unaryScenarios,
  watchScenarioName,
  type Measurement,
  type Sizes,
} from "./scenarios.js";
import { FULL_LARGE, largeScenarios, runLargeScenario, SMOKE_LARGE } from "./large.js";
import { useLoadClient } from "./loadgen.js";
import { LOAD_GENERATOR_MALLOC, quiet, rssBytes } from "./proc.js";
import { startLab, type Target } from "./targets.js";

// glibc reads its settings as the process starts: run again with them.
if (process.env.MALLOC_TRIM_THRESHOLD_ === undefined) {
  const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, ...LOAD_GENERATOR_MALLOC },
  });
  process.exit(again.status ?? 1);
}

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    rounds: { type: "string" },
    seconds: { type: "string" },
    targets: { type: "string" },
    only: { type: "string" },
    out: { type: "string" },
    "idle-seconds": { type: "string" },
    client: { type: "string", default: "counting" },
  },
});
if (args.client !== "counting" && args.client !== "grpc-js") throw new Error("--client is counting or grpc-js");
useLoadClient(args.client);

const sizes: Sizes = args.smoke
  ? // Half-second runs: the smoke checks that every scenario works, not how fast.
    {
      seconds: 0.5,
      workers: 2,
      closedLoopClients: 4,
      watches: [{ watchers: 100, putsPerSecond: 10 }],
      leaseClients: [100],
      watchSeconds: 1,
      leaseSeconds: 1,
    }
  : {
      seconds: 5,
      workers: 2,
      closedLoopClients: 100,
      // 10k watchers at 100 puts/s is a million deliveries a second, on two
      // cores shared with the load generator: an overload run, reported and
      // never failed (etcd's Go proxy and our Connect lane miss events there).
      // 1k at 100/s and 10k at 10/s are the everyday points.
      watches: [
        { watchers: 1000, putsPerSecond: 100 },
        { watchers: 10000, putsPerSecond: 10 },
        { watchers: 10000, putsPerSecond: 100, overload: true },
        // watch-large: 1 MiB events to 100 watchers.
        { watchers: 100, putsPerSecond: 2, valueBytes: 1 << 20 },
      ],
      leaseClients: [1000, 10000],
      watchSeconds: 6,
      leaseSeconds: 8,
    };
if (args.seconds) sizes.seconds = Number(args.seconds);
const rounds = Number(args.rounds ?? (args.smoke ? 1 : 3));
// Scenario names contain ", " themselves, so only a bare comma separates two.
const only = args.only?.split(/,(?! )/);
const wanted = (scenario: string) => !only || only.some((o) => scenario.startsWith(o));

const targets =
  args.targets ?? (args.smoke ? "direct,go-proxy,ecp" : "direct,go-proxy-3.4,go-proxy-3.5,ecp,ecp-connect");
const lab = await startLab(targets.split(","));
const measurements: Measurement[] = [];
const joinLags: JoinLag[] = [];
const staleness: CacheStaleness[] = [];
const idleWatchers: IdleWatcherCost[] = [];
const log = (m: Measurement) => {
  measurements.push(m);
  const err = m.errors ? `  errors=${m.errors} (${m.firstError})` : "";
  console.error(
    `  ${m.scenario} | ${m.target}: ${m.rps} op/s p50=${m.p50Ms} p99=${m.p99Ms} cpu=${m.cpuUsPerOp}µs${err}`,
  );
};

/** Lets every target (and etcd) finish what earlier runs left it before `target` is measured. */
async function settled(scenario: string, target: Target): Promise<Target> {
  const waited = await quiet([...new Set(lab.targets.map((t) => t.pid))]);
  if (waited < 0)
    console.error(`  ${scenario} | ${target.name}: the targets were still busy after 30 s; measuring anyway`);
  else if (waited > 1000)
    console.error(`  ${scenario} | ${target.name}: waited ${(waited / 1000).toFixed(1)} s for the targets to go quiet`);
  return target;
}

try {
  await prepare(lab);
  for (const t of lab.targets) log(idleRss(t, "idle, after warm-up"));
  // V8 keeps the young generation it grew during start-up until its memory
  // reducer sees the process idle (about 25 s after start here), so the
  // figure that lasts is read after a quiet spell.
  const idleSeconds = Number(args["idle-seconds"] ?? (args.smoke ? 1 : 30));
  if (idleSeconds > 0) {
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const settledRss = new Map(lab.targets.map((t) => [t, rssBytes(t.pid)]));
    for (const t of lab.targets) log(idleRss(t, `idle, ${idleSeconds} s later`));
    if (wanted("idle watchers")) {
      const watchers = args.smoke ? 100 : 10_000;
      idleWatchers.push(...(await measureIdleWatchers(lab.targets, settledRss, watchers, args.smoke ? 1 : 5, sizes)));
      for (const c of idleWatchers)
        console.error(
          `  idle watchers | ${c.target}: first ${c.watchers} ${c.firstBytesPerWatcher} B each, next ${c.watchers} ${c.nextBytesPerWatcher} B each`,
        );
    }
  }
  for (let round = 0; round < rounds; round++) {
    console.error(`round ${round + 1}/${rounds}`);
    // Rotate the order each round so no target always runs first or last.
    const order = lab.targets.map((_, i) => lab.targets[(i + round) % lab.targets.length]!);
    for (const scenario of unaryScenarios.filter((s) => wanted(s.name))) {
      for (const t of order) log(await runUnaryScenario(scenario, await settled(scenario.name, t), sizes));
    }
    for (const scenario of largeScenarios(args.smoke ? SMOKE_LARGE : FULL_LARGE).filter((s) => wanted(s.name))) {
      if (round === 0) await scenario.prepare?.(lab);
      for (const t of order.filter((t) => scenario.servedBy?.(t.name) ?? true)) {
        log(await runLargeScenario(scenario, await settled(scenario.name, t), sizes, lab.etcd));
        await scenario.after?.(lab);
      }
    }
    // A keep-alive's tail depends on what else the two cores are doing at
    // that moment: one run is not enough to compare them.
    for (const n of sizes.leaseClients) {
      if (!wanted(`lease keep-alive, ${n} clients`)) continue;
      for (const t of order)
        log(await runLeaseScenario(lab, await settled(`lease keep-alive, ${n} clients`, t), n, sizes));
    }
  }
  for (const w of sizes.watches) {
    if (!wanted(watchScenarioName(w))) continue;
    for (const t of lab.targets) {
      log(
        await runWatchScenario(
          lab,
          await settled(watchScenarioName(w), t),
          w.watchers,
          w.putsPerSecond,
          sizes,
          w.valueBytes,
        ),
      );
    }
  }
  if (wanted("cache staleness")) {
    for (const t of lab.targets) {
      const s = await measureCacheStaleness(lab, t, args.smoke ? 1 : 5);
      staleness.push(s);
      console.error(
        `  cache staleness | ${t.name}: p50=${s.p50Ms} p99=${s.p99Ms} max=${s.maxMs} ms, hit rate ${s.hitRate}`,
      );
    }
  }
  if (wanted("watch join lag")) {
    for (const t of lab.targets) {
      try {
        const lag = await measureJoinLag(lab, t, 100, args.smoke ? 20 : 200);
        joinLags.push(lag);
        console.error(`  watch join lag | ${t.name}: p50=${lag.p50} p99=${lag.p99} max=${lag.max} revisions`);
      } catch (err) {
        console.error(`  watch join lag | ${t.name}: ${String(err)}`);
      }
    }
  }
} finally {
  await lab.stop();
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const scenarios = [...new Set(measurements.map((m) => m.scenario))];
// A target that does not serve a scenario (etcd's Go proxy has no JSON gateway) gets no row.
const summary = scenarios.flatMap((scenario) =>
  lab.targets.flatMap((t) => {
    const ms = measurements.filter((m) => m.scenario === scenario && m.target === t.name);
    if (ms.length === 0) return [];
    return {
      scenario,
      target: t.name,
      rps: median(ms.map((m) => m.rps)),
      p50Ms: median(ms.map((m) => m.p50Ms)),
      p99Ms: median(ms.map((m) => m.p99Ms)),
      cpuUsPerOp: median(ms.map((m) => m.cpuUsPerOp)),
      rssMB: median(ms.map((m) => m.rssMB)),
      bytesPerWatcher: median(ms.map((m) => m.bytesPerWatcher ?? NaN)),
      eventsPerResponse: median(ms.map((m) => m.eventsPerResponse ?? NaN)),
      putsPerSecond: median(ms.map((m) => m.putsPerSecond ?? NaN)),
      mbPerOp: median(ms.map((m) => m.mbPerOp ?? NaN)),
      cpuMsPerMB: median(ms.map((m) => m.cpuMsPerMB ?? NaN)),
      etcdCpuMsPerOp: median(ms.map((m) => m.etcdCpuMsPerOp ?? NaN)),
      etcdReadCpuMsPerOp: median(ms.map((m) => m.etcdReadCpuMsPerOp ?? NaN)),
      clientCpuMsPerOp: median(ms.map((m) => m.clientCpuMsPerOp ?? NaN)),
      errors: ms.reduce((a, m) => a + m.errors, 0),
    };
  }),
);

const fmt = (n: number, digits = 0) => (Number.isNaN(n) ? "–" : n.toFixed(digits));
const ratio = (a: number, b: number) =>
  Number.isNaN(a) || Number.isNaN(b) || b === 0 ? "–" : `${(a / b).toFixed(2)}×`;
const lines: string[] = [];
for (const scenario of scenarios) {
  const rows = summary.filter((s) => s.scenario === scenario);
  // Ratios are to the first Go proxy measured (etcd 3.4's, when both are).
  const go = rows.find((r) => r.target.startsWith("go-proxy"));
  lines.push(`### ${scenario}`, "");
  if (scenario.startsWith("idle")) {
    lines.push("| target | RSS MB |", "|---|---|");
    for (const r of rows) lines.push(`| ${r.target} | ${fmt(r.rssMB, 1)} |`);
  } else if (!Number.isNaN(rows[0]?.cpuMsPerMB ?? NaN)) {
    const direct = rows.find((r) => r.target === "direct");
    // Scenarios with writes going on also tell what each path costs etcd.
    const etcdCost = !Number.isNaN(rows[0]?.etcdCpuMsPerOp ?? NaN);
    lines.push(
      `| target | calls/s | vs Go proxy | vs direct | p50 ms | p99 ms | MB/call | CPU ms/MB | CPU vs Go proxy | RSS MB | ${etcdCost ? "etcd CPU ms/call | vs direct | etcd CPU a read adds, ms | vs direct | clients' CPU ms/call | " : ""}errors |`,
      `|${"---|".repeat(etcdCost ? 16 : 11)}`,
    );
    for (const r of rows) {
      const cpu = r.target === "direct" ? `${fmt(r.cpuMsPerMB, 2)} (etcd)` : fmt(r.cpuMsPerMB, 2);
      const cpuRatio = r.target === "direct" ? "–" : ratio(r.cpuMsPerMB, go?.cpuMsPerMB ?? NaN);
      const etcdColumns = etcdCost
        ? `${fmt(r.etcdCpuMsPerOp, 3)} | ${ratio(r.etcdCpuMsPerOp, direct?.etcdCpuMsPerOp ?? NaN)} | ${fmt(r.etcdReadCpuMsPerOp, 3)} | ${ratio(r.etcdReadCpuMsPerOp, direct?.etcdReadCpuMsPerOp ?? NaN)} | ${fmt(r.clientCpuMsPerOp, 2)} | `
        : "";
      lines.push(
        `| ${r.target} | ${fmt(r.rps, 1)} | ${ratio(r.rps, go?.rps ?? NaN)} | ${ratio(r.rps, direct?.rps ?? NaN)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.mbPerOp, 2)} | ${cpu} | ${cpuRatio} | ${fmt(r.rssMB, 1)} | ${etcdColumns}${r.errors} |`,
      );
    }
  } else {
    // Watch rows add what only watches have; the first columns are common.
    const watch = scenario.startsWith("watch fan-out");
    lines.push(
      `| target | ${watch ? "events/s" : "ops/s"} | vs Go proxy | p50 ms | p99 ms | CPU µs/${watch ? "event" : "op"} | CPU vs Go proxy | RSS MB | ${watch ? "B/idle watcher | events/response | puts/s made | missed" : "errors"} |`,
      `|${"---|".repeat(watch ? 12 : 9)}`,
    );
    for (const r of rows) {
      const cpu = r.target === "direct" ? `${fmt(r.cpuUsPerOp, 1)} (etcd)` : fmt(r.cpuUsPerOp, 1);
      const cpuRatio = r.target === "direct" ? "–" : ratio(r.cpuUsPerOp, go?.cpuUsPerOp ?? NaN);
      const common = `| ${r.target} | ${fmt(r.rps)} | ${ratio(r.rps, go?.rps ?? NaN)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${cpu} | ${cpuRatio} | ${fmt(r.rssMB, 1)} |`;
      lines.push(
        watch
          ? `${common} ${fmt(r.bytesPerWatcher)} | ${fmt(r.eventsPerResponse, 1)} | ${fmt(r.putsPerSecond)} | ${r.errors} |`
          : `${common} ${r.errors} |`,
      );
    }
  }
  lines.push("");
}
if (idleWatchers.length) {
  const n = idleWatchers[0]!.watchers;
  lines.push(
    `### idle watchers: RSS per watcher, ${n} opened after the settled idle reading, then ${n} more`,
    "",
    `| target | RSS MB with ${2 * n} | B/watcher, first ${n} | B/watcher, next ${n} |`,
    "|---|---|---|---|",
    ...idleWatchers.map(
      (c) => `| ${c.target} | ${fmt(c.rssMB, 1)} | ${c.firstBytesPerWatcher} | ${c.nextBytesPerWatcher} |`,
    ),
    "",
  );
}
if (staleness.length) {
  lines.push(
    "### cache staleness: how far behind etcd's acknowledged writes a serializable read is (a write every 20 ms)",
    "",
    "| target | reads | p50 ms | p99 ms | max ms | cache hit rate |",
    "|---|---|---|---|---|---|",
    ...staleness.map(
      (s) =>
        `| ${s.target} | ${s.reads} | ${s.p50Ms} | ${s.p99Ms} | ${s.maxMs} | ${Number.isNaN(s.hitRate) ? "–" : `${(s.hitRate * 100).toFixed(1)} %`} |`,
    ),
    "",
  );
}
if (joinLags.length) {
  lines.push(
    "### watch join lag: revisions a watcher from now starts behind etcd (100 puts/s on the key)",
    "",
    "| target | joins | p50 | p99 | max |",
    "|---|---|---|---|---|",
    ...joinLags.map((l) => `| ${l.target} | ${l.samples} | ${l.p50} | ${l.p99} | ${l.max} |`),
    "",
  );
}
const date = new Date().toISOString();
console.log(
  `## Results, ${date}\n\n${availableParallelism()} CPUs, node ${process.version}, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}; ${rounds} round(s), medians.\n\n${lines.join("\n")}`,
);

const out = args.out ?? join(dirname(fileURLToPath(import.meta.url)), "results", "latest.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify({ date, sizes, rounds, summary, measurements, joinLags, staleness, idleWatchers }, null, 2),
);
console.error(`raw numbers: ${out}`);

// The bench fails only if this proxy or etcd itself failed requests, and
// not where etcd direct also fell short (the load generator's own limit),
// nor in overload runs.
const directFailed = new Set(summary.filter((s) => s.target === "direct" && s.errors > 0).map((s) => s.scenario));
const overloads = new Set(sizes.watches.filter((w) => w.overload).map(watchScenarioName));
const broken = summary.filter(
  (s) =>
    !s.target.startsWith("go-proxy") &&
    !s.scenario.startsWith("idle") &&
    !directFailed.has(s.scenario) &&
    !overloads.has(s.scenario) &&
    (s.errors > 0 || !(s.rps > 0)),
);
if (broken.length) {
  console.error(`failed: ${broken.map((b) => `${b.scenario} on ${b.target}`).join(", ")}`);
  process.exit(1);
}
