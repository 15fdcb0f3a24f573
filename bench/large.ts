// Large answers and values (issue 32): what a megabyte costs on each path.
// Every scenario reports, besides throughput and latency, the measured
// process's CPU per megabyte moved: the proxy's own for a proxy, etcd's for
// "direct".
import { create, toBinary } from "@bufbuild/protobuf";
import { PutRequestSchema, RangeRequestSchema, WatchRequestSchema } from "../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { EtcdGrpcClient } from "../test/helpers/grpc-client.js";
import { CountingChannel, grpcFrame } from "./counting-channel.js";
import { startJob, type JobResult } from "./loadgen.js";
import { cpuMicros, percentile, rssBytes } from "./proc.js";
import type { Measurement, Sizes } from "./scenarios.js";
import type { Lab, Target } from "./targets.js";

/** The clients of each large scenario, in two load-generator threads. */
const CLIENTS = 8;
const WORKERS = 2;

const RANGE_VALUE_BYTES = 500;
const RANGE_PREFIX = "bench/large/";
const PUT_VALUE_BYTES = 1 << 20;

const enc = new TextEncoder();

const SNAPSHOT_CLIENTS = 2;
const LIST_WRITES_PER_SECOND = 100;
/** How long the writer runs alone before a LIST measurement, to tell its cost to etcd from the reads'. */
const WRITES_ONLY_MS = 2000;

export interface LargeScenario {
  name: string;
  path: string;
  /**
   * Unary calls, server streams read to their end (a snapshot), POSTs to
   * etcd's JSON gateway (`path` is its path, requests are JSON), or a closed
   * loop of puts fanned out to `clients` watchers (see runWatchLoop).
   */
  kind: "unary" | "stream" | "gateway" | "watch-loop";
  requests: () => Uint8Array[];
  /** Megabytes per unary call; streams count what they received. */
  mbPerOp: number;
  clients: number;
  /** Run once before the scenario's first measurement. */
  prepare?: (lab: Lab) => Promise<void>;
  /** Run after each target's measurement. */
  after?: (lab: Lab) => Promise<void>;
  /** Puts per second into the keys read, straight to etcd, while the clients run; etcd's CPU is measured too. */
  writerPutsPerSecond?: number;
  /** Whether `target` serves the scenario (etcd's Go proxy has no JSON gateway). */
  servedBy?: (target: string) => boolean;
}

/** How large the large scenarios are: the full run's, or a smoke run's (which only checks they work). */
export interface LargeSizes {
  /** range-large's keys of 500 B (2,000: about 1 MB an answer). */
  rangeKeys: number;
  /** snapshot's database, in values of 1 MiB. */
  snapshotMB: number;
  /** Whether put-large and the watch loop compact and defragment etcd after each target. */
  reclaim: boolean;
  /** The watch loop's watchers. */
  loopWatchers: number;
}

export const FULL_LARGE: LargeSizes = { rangeKeys: 2000, snapshotMB: 100, reclaim: true, loopWatchers: 100 };
export const SMOKE_LARGE: LargeSizes = { rangeKeys: 200, snapshotMB: 4, reclaim: false, loopWatchers: 10 };

export const largeScenarios = ({ rangeKeys, snapshotMB, reclaim, loopWatchers }: LargeSizes): LargeScenario[] => [
  {
    name: `range-large (${rangeKeys} keys × ${RANGE_VALUE_BYTES} B, linearizable)`,
    path: "/etcdserverpb.KV/Range",
    kind: "unary",
    requests: wholePrefixRange,
    mbPerOp: rangeAnswerMB(rangeKeys),
    clients: CLIENTS,
    prepare: (lab) => prepareRangeKeys(lab, rangeKeys),
  },
  {
    // The same read through etcd's JSON gateway (POST /v3/kv/range), as JSON-gateway clients make it.
    name: `range-large, JSON gateway (${rangeKeys} keys × ${RANGE_VALUE_BYTES} B, linearizable)`,
    path: "/v3/kv/range",
    kind: "gateway",
    requests: () => [
      enc.encode(
        JSON.stringify({
          key: Buffer.from(RANGE_PREFIX).toString("base64"),
          range_end: Buffer.from(prefixEnd(RANGE_PREFIX)).toString("base64"),
        }),
      ),
    ],
    mbPerOp: rangeAnswerMB(rangeKeys),
    clients: CLIENTS,
    prepare: (lab) => prepareRangeKeys(lab, rangeKeys),
    servedBy: (target) => !target.startsWith("go-proxy"),
  },
  {
    // Issue 33's LIST: what a linearizable read of a whole prefix costs etcd, with writes going on.
    name: `list (${rangeKeys} keys × ${RANGE_VALUE_BYTES} B, linearizable, ${LIST_WRITES_PER_SECOND} puts/s into them)`,
    path: "/etcdserverpb.KV/Range",
    kind: "unary",
    requests: wholePrefixRange,
    mbPerOp: rangeAnswerMB(rangeKeys),
    clients: CLIENTS,
    prepare: (lab) => prepareRangeKeys(lab, rangeKeys),
    writerPutsPerSecond: LIST_WRITES_PER_SECOND,
  },
  {
    name: `snapshot (a ${snapshotMB} MB database, ${SNAPSHOT_CLIENTS} clients)`,
    path: "/etcdserverpb.Maintenance/Snapshot",
    kind: "stream",
    requests: () => [new Uint8Array()],
    mbPerOp: NaN,
    clients: SNAPSHOT_CLIENTS,
    prepare: (lab) => fillDatabase(lab, snapshotMB),
  },
  {
    name: "put-large (1 MiB values)",
    path: "/etcdserverpb.KV/Put",
    kind: "unary",
    requests: () =>
      Array.from({ length: CLIENTS }, (_, i) =>
        toBinary(
          PutRequestSchema,
          create(PutRequestSchema, { key: enc.encode(`bench/put-large/${i}`), value: new Uint8Array(PUT_VALUE_BYTES) }),
        ),
      ),
    mbPerOp: PUT_VALUE_BYTES / 1e6,
    clients: CLIENTS,
    // Each large put is a new revision of a megabyte: give the backend its space back (a smoke run puts little).
    after: reclaim ? reclaimEtcd : undefined,
  },
  {
    // watch-large as fast as a target fans it out: the fixed-rate watch fan-out measures cost, this one throughput.
    name: `watch-large, closed loop (${loopWatchers} watchers, 1 MiB values)`,
    path: "/etcdserverpb.Watch/Watch",
    kind: "watch-loop",
    requests: () => [
      toBinary(
        WatchRequestSchema,
        create(WatchRequestSchema, {
          requestUnion: { case: "createRequest", value: { key: enc.encode(WATCH_LOOP_KEY) } },
        }),
      ),
    ],
    mbPerOp: (loopWatchers * PUT_VALUE_BYTES) / 1e6,
    clients: loopWatchers,
    after: reclaim ? reclaimEtcd : undefined,
  },
];

const WATCH_LOOP_KEY = "bench/watch-loop";
/** A round whose event has not reached every watcher by then is counted as an error, and the loop stops. */
const WATCH_LOOP_ROUND_TIMEOUT_MS = 10_000;

/** A linearizable Range of every key range-large and the LIST read. */
const wholePrefixRange = () => [
  toBinary(
    RangeRequestSchema,
    create(RangeRequestSchema, { key: enc.encode(RANGE_PREFIX), rangeEnd: enc.encode(prefixEnd(RANGE_PREFIX)) }),
  ),
];

/** The answer's size: keys, values and protobuf framing, about 1.09 MB for 2,000 keys. */
const rangeAnswerMB = (keys: number) => (keys * (RANGE_VALUE_BYTES + RANGE_PREFIX.length + 5 + 30)) / 1e6;

function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** Writes the keys range-large reads, straight into etcd. */
async function prepareRangeKeys(lab: Lab, keys: number): Promise<void> {
  const client = new EtcdGrpcClient(lab.etcd.endpoints);
  const value = Buffer.alloc(RANGE_VALUE_BYTES, "v");
  try {
    for (let at = 0; at < keys; at += 100) {
      const success = Array.from({ length: Math.min(100, keys - at) }, (_, i) => ({
        request_put: { key: Buffer.from(`${RANGE_PREFIX}${String(at + i).padStart(5, "0")}`), value },
      }));
      await client.unary("KV", "Txn", { success });
    }
  } finally {
    client.close();
  }
}

/**
 * Compacts etcd to its current revision and defragments every member, so
 * that put-large's megabytes (each a new revision) do not fill the backend.
 */
async function reclaimEtcd(lab: Lab): Promise<void> {
  const client = new EtcdGrpcClient(lab.etcd.endpoints);
  try {
    const { header } = (await client.unary("KV", "Range", { key: Buffer.from("bench/hot") })) as {
      header: { revision: string };
    };
    await client.unary("KV", "Compact", { revision: header.revision, physical: true }).catch(() => {});
    await client.unary("Maintenance", "Defragment", {});
  } finally {
    client.close();
  }
}

/** Puts `megabytes` values of 1 MiB, so that etcd's database (and a snapshot of it) is about that large. */
async function fillDatabase(lab: Lab, megabytes: number): Promise<void> {
  const client = new EtcdGrpcClient(lab.etcd.endpoints);
  const value = Buffer.alloc(PUT_VALUE_BYTES, "s");
  try {
    for (let i = 0; i < megabytes; i++) {
      await client.unary("KV", "Put", { key: Buffer.from(`bench/snapshot/${i}`), value });
    }
  } finally {
    client.close();
  }
}

/** Puts into the keys range-large reads, straight to etcd, one at a time, at about `perSecond`. */
function startWriter(etcd: Lab["etcd"], perSecond: number): { stop(): Promise<void> } {
  const client = new EtcdGrpcClient(etcd.endpoints);
  const value = Buffer.alloc(RANGE_VALUE_BYTES, "w");
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const next = performance.now() + 1000 / perSecond;
      const key = Buffer.from(`${RANGE_PREFIX}${String(i % 100).padStart(5, "0")}`);
      await client.unary("KV", "Put", { key, value }).catch(() => {});
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      client.close();
    },
  };
}

export async function runLargeScenario(
  scenario: LargeScenario,
  target: Target,
  sizes: Sizes,
  etcd: Lab["etcd"],
): Promise<Measurement> {
  if (scenario.kind === "watch-loop") return runWatchLoop(scenario, target, sizes, etcd);
  const requests = scenario.requests();
  const { seconds } = sizes;
  // A smoke run (few closed-loop clients) gives each large scenario two.
  const clients = sizes.closedLoopClients < CLIENTS ? Math.min(2, scenario.clients) : scenario.clients;
  const workers = Math.min(WORKERS, clients);
  const running = Array.from({ length: workers }, () =>
    startJob(
      scenario.kind !== "stream"
        ? {
            kind: "unary",
            address: target.address,
            path: scenario.path,
            requests,
            channels: clients / workers,
            concurrency: 1,
            durationMs: seconds * 1000,
            protocol: scenario.kind === "gateway" ? "gateway" : "grpc",
          }
        : {
            kind: "stream",
            address: target.address,
            path: scenario.path,
            request: requests[0]!,
            channels: clients / workers,
            durationMs: seconds * 1000,
          },
    ),
  );
  await Promise.all(running.map((j) => j.ready));
  const etcdPids = etcd.members.map((m) => m.process!.pid!);
  const etcdCpu = () => etcdPids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const writer = scenario.writerPutsPerSecond ? startWriter(etcd, scenario.writerPutsPerSecond) : undefined;
  // What the writes alone cost etcd, per second: the reads' share is what they add to it.
  let writesOnlyUsPerSecond = 0;
  if (writer) {
    const before = etcdCpu();
    const from = performance.now();
    // A smoke run (seconds of measurement) takes less of it.
    await new Promise((r) => setTimeout(r, Math.min(WRITES_ONLY_MS, seconds * 500)));
    writesOnlyUsPerSecond = (etcdCpu() - before) / ((performance.now() - from) / 1000);
  }
  const cpu0 = cpuMicros(target.pid);
  const etcdCpu0 = etcdCpu();
  const clientCpu0 = process.cpuUsage();
  const started = performance.now();
  running.forEach((j) => j.go());
  const results: JobResult[] = await Promise.all(running.map((j) => j.result));
  await writer?.stop();
  const elapsed = (performance.now() - started) / 1000;
  const cpuUs = cpuMicros(target.pid) - cpu0;
  const etcdCpuUs = etcdCpu() - etcdCpu0;
  // The load generator's threads live in this process: what the clients cost, to tell whether they were the limit.
  const clientCpu = process.cpuUsage(clientCpu0);
  const clientCpuUs = clientCpu.user + clientCpu.system;
  const count = results.reduce((a, r) => a + r.count, 0);
  const latencies = results.flatMap((r) => r.latencies);
  const megabytes =
    scenario.kind !== "stream" ? count * scenario.mbPerOp : results.reduce((a, r) => a + (r.bytes ?? 0), 0) / 1e6;
  return {
    ...figures(scenario, target, { count, elapsed, cpuUs, megabytes, latencies }),
    etcdCpuMsPerOp: writer && count > 0 ? round(etcdCpuUs / 1000 / count, 3) : undefined,
    clientCpuMsPerOp: writer && count > 0 ? round(clientCpuUs / 1000 / count, 3) : undefined,
    etcdReadCpuMsPerOp:
      writer && count > 0 ? round((etcdCpuUs - writesOnlyUsPerSecond * elapsed) / 1000 / count, 3) : undefined,
    errors: results.reduce((a, r) => a + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
  };
}

/**
 * The watch loop: `scenario.clients` watchers of one key on one stream of
 * the counting client, whose 16 MiB window lets no client pace the server,
 * and a putter that writes the next 1 MiB value straight to etcd once every
 * watcher has the last. A round is one value delivered to every watcher;
 * its latency runs from the put's start to the last watcher's event.
 */
async function runWatchLoop(
  scenario: LargeScenario,
  target: Target,
  sizes: Sizes,
  etcd: Lab["etcd"],
): Promise<Measurement> {
  const watchers = scenario.clients;
  const channel = new CountingChannel(target.address);
  const putter = new CountingChannel(etcd.endpoints);
  const put = grpcFrame(
    toBinary(
      PutRequestSchema,
      create(PutRequestSchema, { key: enc.encode(WATCH_LOOP_KEY), value: new Uint8Array(PUT_VALUE_BYTES) }),
    ),
  );
  let created = 0;
  let delivered = 0;
  let check: (() => void) | undefined;
  /** Resolves true once `done()` holds, false if it does not within a round's timeout. */
  const until = (done: () => boolean) =>
    new Promise<boolean>((resolve) => {
      if (done()) return resolve(true);
      const timer = setTimeout(() => {
        check = undefined;
        resolve(false);
      }, WATCH_LOOP_ROUND_TIMEOUT_MS);
      check = () => {
        if (!done()) return;
        clearTimeout(timer);
        check = undefined;
        resolve(true);
      };
    });
  const stream = channel.stream(
    scenario.path,
    Array.from({ length: watchers }, () => grpcFrame(scenario.requests()[0]!)),
    // Answers as long as the value carry it; the shorter ones are the watchers' creations.
    (length) => {
      if (length < PUT_VALUE_BYTES) created++;
      else delivered++;
      check?.();
    },
  );
  let errors = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  try {
    if (!(await until(() => created >= watchers))) throw new Error(`${created} of ${watchers} watchers created`);
    const cpu0 = cpuMicros(target.pid);
    const started = performance.now();
    const deadline = started + sizes.seconds * 1000;
    while (performance.now() < deadline) {
      const from = performance.now();
      const everyWatcher = delivered + watchers;
      await putter.call("/etcdserverpb.KV/Put", put);
      if (!(await until(() => delivered >= everyWatcher))) {
        errors++;
        firstError = `${watchers - (everyWatcher - delivered)} of ${watchers} watchers had the value after ${WATCH_LOOP_ROUND_TIMEOUT_MS} ms`;
        break;
      }
      latencies.push(performance.now() - from);
    }
    const elapsed = (performance.now() - started) / 1000;
    const cpuUs = cpuMicros(target.pid) - cpu0;
    const megabytes = (delivered * PUT_VALUE_BYTES) / 1e6;
    return {
      ...figures(scenario, target, { count: latencies.length, elapsed, cpuUs, megabytes, latencies }),
      errors,
      firstError,
    };
  } finally {
    stream.cancel();
    channel.close();
    putter.close();
  }
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** What every large scenario reports, from what it counted (`elapsed` in seconds, `latencies` in ms). */
function figures(
  scenario: LargeScenario,
  target: Target,
  counted: { count: number; elapsed: number; cpuUs: number; megabytes: number; latencies: number[] },
): Omit<Measurement, "errors"> {
  const { count, elapsed, cpuUs, megabytes } = counted;
  const latencies = Float64Array.from(counted.latencies).sort();
  return {
    scenario: scenario.name,
    target: target.name,
    rps: round(count / elapsed, 1),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    cpuUsPerOp: count > 0 ? round(cpuUs / count, 1) : NaN,
    mbPerOp: count > 0 ? round(megabytes / count, 3) : NaN,
    cpuMsPerMB: megabytes > 0 ? round(cpuUs / 1000 / megabytes) : NaN,
    rssMB: round(rssBytes(target.pid) / 1e5, 0) / 10,
  };
}
