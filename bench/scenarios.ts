import { create, toBinary } from "@bufbuild/protobuf";
import {
  LeaseKeepAliveRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
} from "../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { EtcdGrpcClient } from "../test/helpers/grpc-client.js";
import { cpuMicros, percentile, rssBytes } from "./proc.js";
import { startJob, type Job, type JobResult, type RunningJob } from "./loadgen.js";
import type { Lab, Target } from "./targets.js";

export interface Sizes {
  /** Seconds per unary measurement. */
  seconds: number;
  /** Worker threads generating load. */
  workers: number;
  /**
   * Closed-loop clients per unary scenario, over one connection per 10 (100,
   * as etcd's benchmark tool runs them); a smoke run uses few, so that it
   * checks the scenarios without taking the machine from tests beside it.
   */
  closedLoopClients: number;
  /** Watch fan-out runs: how many watchers, and how many puts per second reach them. */
  /** Watch fan-out loads; an overload run asks more than the load generator can read, and is reported but never failed. */
  watches: Array<{ watchers: number; putsPerSecond: number; overload?: boolean; valueBytes?: number }>;
  leaseClients: number[];
  /** How long each watch run puts. */
  watchSeconds: number;
  leaseSeconds: number;
}

export interface Measurement {
  scenario: string;
  target: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU of the measured process per request (per event for watches), µs. */
  cpuUsPerOp: number;
  rssMB: number;
  /** For idle watchers: bytes of proxy RSS per watcher. */
  bytesPerWatcher?: number;
  /** Watch fan-out: events per response received (above 1 when the server batched a watcher's events). */
  eventsPerResponse?: number;
  /** Watch fan-out: puts the putter made per second (it waits for each, so a busy etcd slows it). */
  putsPerSecond?: number;
  /** Large scenarios: megabytes moved per call (the answer's for reads, the value's for writes). */
  mbPerOp?: number;
  /** Large scenarios: CPU of the measured process per megabyte moved, ms. */
  cpuMsPerMB?: number;
  /** Scenarios that measure etcd under every target: etcd's CPU (all members) per call, ms. */
  etcdCpuMsPerOp?: number;
  /** The same less what the writes alone cost etcd (measured before the reads start): what a read adds. */
  etcdReadCpuMsPerOp?: number;
  /** The load generator's CPU per call (this process, its worker threads included), ms. */
  clientCpuMsPerOp?: number;
  errors: number;
  firstError?: string;
}

const enc = new TextEncoder();
const key = (s: string) => enc.encode(s);

/** Watch and lease clients spread over 10 connections. */
const CONNECTIONS = 10;

function unaryJobs(target: Target, path: string, requests: Uint8Array[], sizes: Sizes): Job[] {
  const connections = Math.max(sizes.workers, Math.ceil(sizes.closedLoopClients / 10));
  return Array.from({ length: sizes.workers }, () => ({
    kind: "unary" as const,
    address: target.address,
    path,
    requests,
    channels: connections / sizes.workers,
    concurrency: Math.max(1, Math.round(sizes.closedLoopClients / connections)),
    durationMs: sizes.seconds * 1000,
  }));
}

function merge(results: JobResult[]): JobResult {
  return {
    count: results.reduce((a, r) => a + r.count, 0),
    errors: results.reduce((a, r) => a + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
    latencies: results.flatMap((r) => r.latencies),
    eventResponses: results.reduce((a, r) => a + (r.eventResponses ?? 0), 0),
  };
}

function summarize(
  scenario: string,
  target: Target,
  result: JobResult,
  seconds: number,
  cpuUs: number,
  ops = result.count,
): Measurement {
  const sorted = Float64Array.from(result.latencies).sort();
  return {
    scenario,
    target: target.name,
    rps: Math.round(result.count / seconds),
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    cpuUsPerOp: ops > 0 ? Math.round((cpuUs / ops) * 10) / 10 : NaN,
    rssMB: Math.round(rssBytes(target.pid) / 1e5) / 10,
    errors: result.errors,
    firstError: result.firstError,
  };
}

const round = (n: number) => Math.round(n * 100) / 100;

async function measureUnary(scenario: string, target: Target, path: string, requests: Uint8Array[], sizes: Sizes) {
  const running = unaryJobs(target, path, requests, sizes).map(startJob);
  await Promise.all(running.map((j) => j.ready));
  const cpu0 = cpuMicros(target.pid);
  const started = performance.now();
  running.forEach((j) => j.go());
  const result = merge(await Promise.all(running.map((j) => j.result)));
  const seconds = (performance.now() - started) / 1000;
  return summarize(scenario, target, result, seconds, cpuMicros(target.pid) - cpu0);
}

/** The unary scenarios of etcd's benchmark tool, plus the cached read. */
export const unaryScenarios: Array<{
  name: string;
  path: string;
  requests: () => Uint8Array[];
}> = [
  {
    name: "put",
    path: "/etcdserverpb.KV/Put",
    requests: () =>
      Array.from({ length: 1000 }, (_, i) =>
        toBinary(PutRequestSchema, create(PutRequestSchema, { key: key(`bench/put/${i}`), value: key("12345678") })),
      ),
  },
  {
    name: "range (linearizable)",
    path: "/etcdserverpb.KV/Range",
    requests: () => [toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: key("bench/hot") }))],
  },
  {
    name: "range (serializable, hot key)",
    path: "/etcdserverpb.KV/Range",
    requests: () => [
      toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: key("bench/hot"), serializable: true })),
    ],
  },
  {
    name: "txn (put)",
    path: "/etcdserverpb.KV/Txn",
    requests: () =>
      Array.from({ length: 1000 }, (_, i) =>
        toBinary(
          TxnRequestSchema,
          create(TxnRequestSchema, {
            success: [
              {
                request: {
                  case: "requestPut",
                  value: { key: key(`bench/txn/${i}`), value: key("12345678") },
                },
              },
            ],
          }),
        ),
      ),
  },
];

export async function runUnaryScenario(
  scenario: (typeof unaryScenarios)[number],
  target: Target,
  sizes: Sizes,
): Promise<Measurement> {
  return measureUnary(scenario.name, target, scenario.path, scenario.requests(), sizes);
}

export function watchScenarioName(w: { watchers: number; putsPerSecond: number; valueBytes?: number }): string {
  const large = w.valueBytes
    ? `, ${w.valueBytes >= 1 << 20 ? `${w.valueBytes >> 20} MiB` : `${w.valueBytes} B`} values`
    : "";
  return `watch fan-out, ${w.watchers} watchers, ${w.putsPerSecond} puts/s${large}`;
}

/**
 * Opens `watchers` watchers on the watch scenario's key, 100 per stream over
 * 10 connections, in the load generator's threads; resolves once etcd (or
 * the proxy) has created them all and they are listening.
 */
async function openWatchers(target: Target, watchers: number, sizes: Sizes): Promise<RunningJob[]> {
  const perStream = Math.min(100, watchers);
  const streams = Math.ceil(watchers / perStream);
  const createRequest = toBinary(
    WatchRequestSchema,
    create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: { key: key("bench/watch") } } }),
  );
  const workerCount = Math.min(sizes.workers, streams);
  const jobs = Array.from({ length: workerCount }, (_, w) =>
    startJob({
      kind: "watch",
      address: target.address,
      createRequest,
      channels: CONNECTIONS / sizes.workers,
      streams: Math.floor(streams / workerCount) + (w < streams % workerCount ? 1 : 0),
      watchersPerStream: perStream,
    }),
  );
  await Promise.all(jobs.map((j) => j.ready));
  jobs.forEach((j) => j.go());
  return jobs;
}

/** What idle watchers cost each target: see measureIdleWatchers. */
export interface IdleWatcherCost {
  target: string;
  watchers: number;
  /** RSS with 2 × `watchers` open, MB. */
  rssMB: number;
  /** The first `watchers` against the settled idle RSS: includes what the burst of opening grew. */
  firstBytesPerWatcher: number;
  /** The next `watchers`, opened after the first: the cost that grows with the count. */
  nextBytesPerWatcher: number;
}

/**
 * Idle watchers on every target: opens `watchers` on each, lets them sit
 * `seconds`, reads RSS; then the same again. The first figure, against
 * `baseline` (each target's settled idle RSS, in bytes), also holds what
 * opening them grew once (V8's young generation, which it keeps until its
 * next full GC); the second is what each further watcher costs.
 */
export async function measureIdleWatchers(
  targets: readonly Target[],
  baseline: ReadonlyMap<Target, number>,
  watchers: number,
  seconds: number,
  sizes: Sizes,
): Promise<IdleWatcherCost[]> {
  const opened: RunningJob[] = [];
  const openAndRead = async () => {
    for (const t of targets) opened.push(...(await openWatchers(t, watchers, sizes)));
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return new Map(targets.map((t) => [t, rssBytes(t.pid)]));
  };
  try {
    const first = await openAndRead();
    const second = await openAndRead();
    return targets.map((t) => ({
      target: t.name,
      watchers,
      rssMB: Math.round(second.get(t)! / 1e5) / 10,
      firstBytesPerWatcher: Math.round((first.get(t)! - baseline.get(t)!) / watchers),
      nextBytesPerWatcher: Math.round((second.get(t)! - first.get(t)!) / watchers),
    }));
  } finally {
    opened.forEach((j) => j.stop());
    await Promise.all(opened.map((j) => j.result));
  }
}

/**
 * Watch fan-out: `watchers` watchers on one key, over 10 connections (100
 * watchers per stream). A putter writes straight to etcd, each value carrying
 * its send time; the latency is from the put's start to each watcher's event.
 * Also measures the proxy's memory per idle watcher before the puts start.
 */
export async function runWatchScenario(
  lab: Lab,
  target: Target,
  watchers: number,
  putsPerSecond: number,
  sizes: Sizes,
  valueBytes = 0,
): Promise<Measurement> {
  const rssBefore = rssBytes(target.pid);
  // watch-large: the send time, then padding to the value's size.
  const padding = Buffer.alloc(Math.max(0, valueBytes - 32), "p");
  const jobs = await openWatchers(target, watchers, sizes);
  await new Promise((r) => setTimeout(r, 500));
  const bytesPerWatcher = Math.max(0, Math.round((rssBytes(target.pid) - rssBefore) / watchers));

  const putter = new EtcdGrpcClient(lab.etcd.endpoints);
  const cpu0 = cpuMicros(target.pid);
  const started = performance.now();
  const until = Date.now() + sizes.watchSeconds * 1000;
  let puts = 0;
  while (Date.now() < until) {
    const ts = performance.timeOrigin + performance.now();
    const value = Buffer.concat([Buffer.from(`ts:${ts.toFixed(3)};`), padding]);
    await putter.unary("KV", "Put", { key: Buffer.from("bench/watch"), value });
    puts++;
    const wait = started + (puts * 1000) / putsPerSecond - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const putsEnded = performance.now();
  await new Promise((r) => setTimeout(r, 1000)); // let the last events arrive
  const cpuUs = cpuMicros(target.pid) - cpu0;
  jobs.forEach((j) => j.stop());
  putter.close();
  const result = merge(await Promise.all(jobs.map((j) => j.result)));
  const seconds = (performance.now() - started) / 1000;
  const m = summarize(watchScenarioName({ watchers, putsPerSecond, valueBytes }), target, result, seconds, cpuUs);
  if (valueBytes > 0 && result.count > 0) {
    m.mbPerOp = Math.round((valueBytes / 1e6) * 1000) / 1000;
    m.cpuMsPerMB = Math.round((cpuUs / 1000 / ((result.count * valueBytes) / 1e6)) * 100) / 100;
  }
  const expected = puts * watchers;
  if (result.count < expected) {
    m.errors += expected - result.count;
    m.firstError ??= `${expected - result.count} of ${expected} events not delivered`;
  }
  const eventsPerResponse = result.eventResponses ? Math.round((result.count / result.eventResponses) * 10) / 10 : NaN;
  const putsMade = Math.round((puts / (putsEnded - started)) * 1000);
  return { ...m, bytesPerWatcher, eventsPerResponse, putsPerSecond: putsMade };
}

/**
 * Lease keep-alive: `clients` clients, each with its own lease and stream,
 * each sending a keep-alive every second. Latency is from each keep-alive to
 * its answer.
 */
export async function runLeaseScenario(lab: Lab, target: Target, clients: number, sizes: Sizes): Promise<Measurement> {
  const granter = new EtcdGrpcClient(lab.etcd.endpoints);
  // In batches: etcd refuses a burst of thousands of proposals ("too many requests").
  const ids: string[] = [];
  while (ids.length < clients) {
    const batch = Math.min(100, clients - ids.length);
    const granted = await Promise.all(
      Array.from({ length: batch }, () => granter.unary("Lease", "LeaseGrant", { TTL: 9 }).then((r) => String(r.ID))),
    );
    ids.push(...granted);
  }
  granter.close();
  const keepAlives = ids.map((id) =>
    toBinary(LeaseKeepAliveRequestSchema, create(LeaseKeepAliveRequestSchema, { ID: BigInt(id) })),
  );
  const perWorker = Math.ceil(clients / sizes.workers);
  const running = Array.from({ length: sizes.workers }, (_, w) =>
    startJob({
      kind: "lease",
      address: target.address,
      keepAlives: keepAlives.slice(w * perWorker, (w + 1) * perWorker),
      channels: CONNECTIONS / sizes.workers,
      intervalMs: 1000,
      durationMs: sizes.leaseSeconds * 1000,
    }),
  );
  await Promise.all(running.map((j) => j.ready));
  const cpu0 = cpuMicros(target.pid);
  const started = performance.now();
  running.forEach((j) => j.go());
  const results = await Promise.all(running.map((j) => j.result));
  const seconds = (performance.now() - started) / 1000;
  const result = merge(results);
  return summarize(`lease keep-alive, ${clients} clients`, target, result, seconds, cpuMicros(target.pid) - cpu0);
}

/** The measured process's memory with nothing going on. */
export function idleRss(target: Target, scenario: string): Measurement {
  return {
    scenario,
    target: target.name,
    rps: 0,
    p50Ms: NaN,
    p99Ms: NaN,
    cpuUsPerOp: NaN,
    rssMB: Math.round(rssBytes(target.pid) / 1e5) / 10,
    errors: 0,
  };
}

/** Warms every target (JIT, connections) and writes the hot key. */
export async function prepare(lab: Lab): Promise<void> {
  const c = new EtcdGrpcClient(lab.etcd.endpoints);
  await c.unary("KV", "Put", { key: Buffer.from("bench/hot"), value: Buffer.from("12345678") });
  c.close();
  for (const t of lab.targets) {
    const client = new EtcdGrpcClient(t.address);
    for (let i = 0; i < 200; i++) await client.unary("KV", "Range", { key: Buffer.from("bench/hot") });
    client.close();
  }
}

/** How far behind etcd's revision a watcher from "now" starts, in revisions. */
export interface JoinLag {
  target: string;
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * The "may start slightly behind" limitation, measured: with a shared watch
 * live on a key written `putsPerSecond` times a second, new watchers from
 * "now" join it. Each join compares etcd's revision just before the create
 * with the revision the Created answer says the watcher starts after.
 */
export async function measureJoinLag(lab: Lab, target: Target, putsPerSecond: number, joins: number): Promise<JoinLag> {
  const key = Buffer.from("bench/join");
  const etcd = new EtcdGrpcClient(lab.etcd.endpoints);
  const viaTarget = new EtcdGrpcClient(target.address);
  const holder = viaTarget.stream("Watch", "Watch");
  holder.on("error", () => {});
  holder.write({ create_request: { key } });
  let putting = true;
  const putter = (async () => {
    const started = performance.now();
    for (let n = 1; putting; n++) {
      await etcd.unary("KV", "Put", { key, value: Buffer.from(String(n)) });
      const wait = started + (n * 1000) / putsPerSecond - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const lags: number[] = [];
  try {
    for (let i = 0; i < joins; i++) {
      const before = Number(((await etcd.unary("KV", "Range", { key, count_only: true })) as any).header.revision);
      const created = await new Promise<number>((resolve, reject) => {
        const s = viaTarget.stream("Watch", "Watch");
        const timer = setTimeout(() => {
          s.cancel();
          reject(new Error(`${target.name}: no Created within 10 s`));
        }, 10_000);
        s.on("close", () => clearTimeout(timer));
        s.on("data", (r: { created: boolean; header: { revision: string } }) => {
          if (!r.created) return;
          resolve(Number(r.header.revision));
          s.cancel();
        });
        s.on("error", (e: { code?: number }) => (e.code === 1 ? undefined : reject(e)));
        s.write({ create_request: { key } });
      });
      lags.push(Math.max(0, before - created));
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    putting = false;
    await putter;
    holder.cancel();
    etcd.close();
    viaTarget.close();
  }
  lags.sort((a, b) => a - b);
  return {
    target: target.name,
    samples: lags.length,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    max: lags.at(-1)!,
  };
}

/** How stale serializable reads through a target are, and (for this proxy) its cache hit rate. */
export interface CacheStaleness {
  target: string;
  reads: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Hits / (hits + misses) during the run; NaN where the target has no such metrics. */
  hitRate: number;
}

/**
 * Staleness, measured: a writer puts one key straight to etcd every 20 ms; a
 * reader reads it through the target (serializable) in a loop. A read is as
 * stale as the time since etcd acknowledged the oldest write it does not
 * show yet (0 when it shows the latest acknowledged one).
 */
export async function measureCacheStaleness(lab: Lab, target: Target, seconds: number): Promise<CacheStaleness> {
  const key = Buffer.from("bench/stale");
  const etcd = new EtcdGrpcClient(lab.etcd.endpoints);
  const viaTarget = new EtcdGrpcClient(target.address);
  const acked: number[] = []; // acked[v] = when etcd acknowledged value v
  await etcd.unary("KV", "Put", { key, value: Buffer.from("0") });
  acked[0] = performance.now();
  const before = await cacheCounters(target);
  let writing = true;
  const writer = (async () => {
    for (let v = 1; writing; v++) {
      await etcd.unary("KV", "Put", { key, value: Buffer.from(String(v)) });
      acked[v] = performance.now();
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const staleness: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const r = (await viaTarget.unary("KV", "Range", { key, serializable: true })) as { kvs: Array<{ value: Buffer }> };
    const now = performance.now();
    const seen = Number(r.kvs[0]!.value.toString());
    const missed = acked[seen + 1]; // the first write this read does not show
    staleness.push(missed !== undefined && missed < now ? now - missed : 0);
  }
  writing = false;
  await writer;
  const after = await cacheCounters(target);
  etcd.close();
  viaTarget.close();
  staleness.sort((a, b) => a - b);
  const hits = after.hits - before.hits;
  const misses = after.misses - before.misses;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    target: target.name,
    reads: staleness.length,
    p50Ms: round(percentile(staleness, 50)),
    p99Ms: round(percentile(staleness, 99)),
    maxMs: round(staleness.at(-1) ?? NaN),
    hitRate: hits + misses > 0 ? hits / (hits + misses) : NaN,
  };
}

/** This proxy's cache counters from /proxy/metrics; NaN for targets without them. */
async function cacheCounters(target: Target): Promise<{ hits: number; misses: number }> {
  try {
    const text = await (await fetch(`http://${target.address}/proxy/metrics`)).text();
    const read = (name: string) =>
      Number(/^(\S+) (\S+)$/m.exec(text.split("\n").find((l) => l.startsWith(`${name} `)) ?? "")?.[2]);
    return { hits: read("etcd_grpc_proxy_cache_hits_total"), misses: read("etcd_grpc_proxy_cache_misses_total") };
  } catch {
    return { hits: NaN, misses: NaN };
  }
}
