// The load generator, in worker threads, on implementations independent of
// the proxy's own stack: unary and server-streaming calls on node's HTTP/2
// (CountingChannel), or on @grpc/grpc-js when asked; watches and keep-alives
// on grpc-js. Requests are serialized once by the orchestrator; responses are
// not decoded beyond what a measurement needs, so the generator spends its
// CPU on the wire, not on protobuf.
import * as grpc from "@grpc/grpc-js";
import * as http from "node:http";
import { join } from "node:path";
import { parentPort, Worker, workerData } from "node:worker_threads";
import { PACKAGE_ROOT } from "../src/package-root.js";
import { CountingChannel, grpcFrame } from "./counting-channel.js";

/** Which client makes the unary and server-streaming calls. */
export type LoadClient = "counting" | "grpc-js";
let loadClient: LoadClient = "counting";
export function useLoadClient(client: LoadClient): void {
  loadClient = client;
}

export type Job =
  | {
      kind: "unary";
      address: string;
      path: string;
      /** Pre-serialized requests, used round-robin. */
      requests: Uint8Array[];
      channels: number;
      /** Calls in flight per channel. */
      concurrency: number;
      durationMs: number;
      /** `gateway`: POSTs of the requests (JSON bodies) to etcd's JSON gateway path `path`, over HTTP/1.1. */
      protocol?: "grpc" | "gateway";
    }
  | {
      kind: "watch";
      address: string;
      /** A serialized WatchRequest{create_request}. */
      createRequest: Uint8Array;
      channels: number;
      streams: number;
      watchersPerStream: number;
    }
  | {
      /** Server-streaming calls one after another per client (Snapshot): latency is the whole stream's. */
      kind: "stream";
      address: string;
      path: string;
      request: Uint8Array;
      channels: number;
      durationMs: number;
    }
  | {
      kind: "lease";
      address: string;
      /** Serialized LeaseKeepAliveRequest, one per client (lease). */
      keepAlives: Uint8Array[];
      channels: number;
      intervalMs: number;
      durationMs: number;
    };

export interface JobResult {
  count: number;
  errors: number;
  firstError?: string;
  /** Latencies in milliseconds. */
  latencies: number[];
  /** Watch jobs: how many responses carried the events (a response may carry several). */
  eventResponses?: number;
  /** Stream jobs: message bytes received. */
  bytes?: number;
}

const identity = (b: Buffer) => b;
const now = () => performance.timeOrigin + performance.now();

function channels(address: string, n: number): grpc.Client[] {
  return Array.from(
    { length: n },
    () =>
      new grpc.Client(address, grpc.credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.max_receive_message_length": -1,
      }),
  );
}

/** Unary and server-streaming calls that resolve to the answer's message bytes. */
interface Caller {
  unary(path: string, request: Buffer): Promise<number>;
  serverStream(path: string, request: Buffer): Promise<number>;
  close(): void;
}

function grpcJsCaller(client: grpc.Client): Caller {
  return {
    unary: (path, request) =>
      new Promise((resolve, reject) =>
        client.makeUnaryRequest(path, identity, identity, request, (err, answer) =>
          err ? reject(new Error(`${err.code} ${err.details}`)) : resolve(answer!.length),
        ),
      ),
    serverStream: (path, request) =>
      new Promise((resolve, reject) => {
        let bytes = 0;
        const call = client.makeServerStreamRequest(path, identity, identity, request);
        call.on("data", (m: Buffer) => (bytes += m.length));
        call.on("error", (err: grpc.ServiceError) => reject(new Error(`${err.code} ${err.details}`)));
        call.on("status", (status: grpc.StatusObject) => status.code === grpc.status.OK && resolve(bytes));
      }),
    close: () => client.close(),
  };
}

function countingCaller(channel: CountingChannel): Caller {
  // Requests are framed once: a 1 MiB put is not copied again per call.
  const frames = new WeakMap<Buffer, Buffer>();
  const framed = (request: Buffer) => {
    let frame = frames.get(request);
    if (!frame) frames.set(request, (frame = grpcFrame(request)));
    return frame;
  };
  return {
    unary: (path, request) => channel.call(path, framed(request)),
    serverStream: (path, request) => channel.call(path, framed(request)),
    close: () => channel.close(),
  };
}

/**
 * POSTs to etcd's JSON gateway on a kept-alive HTTP/1.1 connection of its
 * own, as a JSON-gateway client library does; counts the body's bytes and
 * fails on any status but 200.
 */
function gatewayCaller(address: string): Caller {
  const [host, port] = address.split(":");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (path: string, body: Buffer) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request({ host, port, path, method: "POST", agent, headers: { "content-length": body.length } });
      req.on("response", (res) => {
        let bytes = 0;
        res.on("data", (c: Buffer) => (bytes += c.length));
        res.on("end", () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`HTTP ${res.statusCode}`))));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  return { unary: post, serverStream: post, close: () => agent.destroy() };
}

function callers(address: string, n: number, client: LoadClient | "gateway"): Caller[] {
  if (client === "gateway") return Array.from({ length: n }, () => gatewayCaller(address));
  return client === "grpc-js"
    ? channels(address, n).map(grpcJsCaller)
    : Array.from({ length: n }, () => countingCaller(new CountingChannel(address)));
}

/** Tells the orchestrator this job is set up, then waits for its signal. */
function readyThenWait(): Promise<void> {
  parentPort!.postMessage({ ready: true });
  return new Promise((resolve) => parentPort!.once("message", () => resolve()));
}

async function runUnary(job: Extract<Job, { kind: "unary" }>, client: LoadClient): Promise<JobResult> {
  const clients = callers(job.address, job.channels, job.protocol === "gateway" ? "gateway" : client);
  const requests = job.requests.map((r) => Buffer.from(r));
  // Connect every channel before the clock starts.
  await Promise.all(clients.map((c) => c.unary(job.path, requests[0]!).catch(() => {})));
  await readyThenWait();
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const until = Date.now() + job.durationMs;
  const loop = async (caller: Caller) => {
    while (Date.now() < until) {
      const started = now();
      try {
        await caller.unary(job.path, requests[next++ % requests.length]!);
        latencies.push(now() - started);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: job.concurrency }, () => loop(c))));
  clients.forEach((c) => c.close());
  return { count: latencies.length, errors, firstError, latencies };
}

async function runStream(job: Extract<Job, { kind: "stream" }>, client: LoadClient): Promise<JobResult> {
  const clients = callers(job.address, job.channels, client);
  const request = Buffer.from(job.request);
  await readyThenWait();
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let bytes = 0;
  const until = Date.now() + job.durationMs;
  const loop = async (caller: Caller) => {
    while (Date.now() < until) {
      const started = now();
      try {
        bytes += await caller.serverStream(job.path, request);
        latencies.push(now() - started);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(clients.map(loop));
  clients.forEach((c) => c.close());
  return { count: latencies.length, errors, firstError, latencies, bytes };
}

/**
 * Calls `found` with the time in each "ts:<ms>" marker the putter wrote into
 * a response's values: one per event, and a response may carry several (a
 * client that fell behind gets its events batched). Returns how many.
 */
function forEachMarker(response: Buffer, found: (ms: number) => void): number {
  let n = 0;
  for (let at = response.indexOf("ts:"); at >= 0; at = response.indexOf("ts:", at + 3)) {
    let end = at + 3;
    while (end < response.length && ((response[end]! >= 0x30 && response[end]! <= 0x39) || response[end] === 0x2e))
      end++;
    found(Number(response.toString("latin1", at + 3, end)));
    n++;
  }
  return n;
}

/**
 * Opens the watchers, reports "ready" once all are created, then records the
 * delivery latency of every event until told to stop.
 */
async function runWatch(job: Extract<Job, { kind: "watch" }>): Promise<JobResult> {
  const clients = channels(job.address, job.channels);
  const createRequest = Buffer.from(job.createRequest);
  const latencies: number[] = [];
  let responses = 0;
  let eventResponses = 0;
  let errors = 0;
  let firstError: string | undefined;
  const total = job.streams * job.watchersPerStream;
  const calls: grpc.ClientDuplexStream<Buffer, Buffer>[] = [];
  let ready!: () => void;
  const allCreated = new Promise<void>((r) => (ready = r));
  if (total === 0) ready();
  for (let s = 0; s < job.streams; s++) {
    const call = clients[s % clients.length]!.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", identity, identity);
    call.on("data", (res: Buffer) => {
      const arrived = now();
      const events = forEachMarker(res, (ts) => latencies.push(arrived - ts));
      if (events > 0) eventResponses++;
      else if (++responses === total) ready();
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED) return;
      errors++;
      firstError ??= `${err.code} ${err.details}`;
    });
    for (let w = 0; w < job.watchersPerStream; w++) call.write(createRequest);
    calls.push(call);
  }
  await allCreated;
  await readyThenWait(); // the orchestrator now measures memory and starts the puts
  await new Promise<void>((resolve) => parentPort!.once("message", () => resolve()));
  calls.forEach((c) => c.cancel());
  clients.forEach((c) => c.close());
  return { count: latencies.length, errors, firstError, latencies, eventResponses };
}

/** Each client keeps its own lease alive on its own stream, every intervalMs. */
async function runLease(job: Extract<Job, { kind: "lease" }>): Promise<JobResult> {
  const clients = channels(job.address, job.channels);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  const timers: NodeJS.Timeout[] = [];
  // Every client opens its stream and has one keep-alive answered before the
  // clock starts, as watchers are all created first in the watch job: the
  // measurement is the steady state, not the stampede of new streams.
  let answeredOnce = 0;
  let allOpen!: () => void;
  const opened = new Promise<void>((r) => (allOpen = r));
  if (job.keepAlives.length === 0) allOpen();
  const calls = job.keepAlives.map((request, i) => {
    const buffer = Buffer.from(request);
    const call = clients[i % clients.length]!.makeBidiStreamRequest(
      "/etcdserverpb.Lease/LeaseKeepAlive",
      identity,
      identity,
    );
    const sent: number[] = [];
    let first = true;
    call.on("data", () => {
      if (first) {
        first = false;
        if (++answeredOnce === job.keepAlives.length) allOpen();
        return;
      }
      const t = sent.shift();
      if (t !== undefined && measuring) latencies.push(now() - t);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED) return;
      errors++;
      firstError ??= `${err.code} ${err.details}`;
    });
    call.write(buffer);
    return { call, buffer, sent };
  });
  await opened;
  await readyThenWait();
  measuring = true;
  calls.forEach(({ call, buffer, sent }, i) => {
    // Spread the clients over the interval, as independent clients would be.
    const send = () => {
      sent.push(now());
      call.write(buffer);
    };
    timers.push(
      setTimeout(
        () => {
          send();
          timers.push(setInterval(send, job.intervalMs));
        },
        (i / job.keepAlives.length) * job.intervalMs,
      ),
    );
  });
  await new Promise((r) => setTimeout(r, job.durationMs));
  timers.forEach((t) => clearTimeout(t));
  // Keep-alives still unanswered when the run ends (a handful at most) are not counted.
  calls.forEach(({ call }) => call.cancel());
  clients.forEach((c) => c.close());
  return { count: latencies.length, errors, firstError, latencies };
}

if (parentPort && workerData?.job) {
  const job = workerData.job as Job;
  const client = workerData.client as LoadClient;
  const run =
    job.kind === "unary"
      ? runUnary(job, client)
      : job.kind === "watch"
        ? runWatch(job)
        : job.kind === "stream"
          ? runStream(job, client)
          : runLease(job);
  run.then(
    (result) => parentPort!.postMessage({ result }),
    (err) => parentPort!.postMessage({ result: { count: 0, errors: 1, firstError: String(err), latencies: [] } }),
  );
}

/**
 * A job running in its own thread: `ready` resolves once it is set up (for
 * watches: every watcher created); `go()` starts the measured part; `stop()`
 * ends a watch job (the others end on their own).
 */
export interface RunningJob {
  ready: Promise<void>;
  go(): void;
  stop(): void;
  result: Promise<JobResult>;
}

export function startJob(job: Job): RunningJob {
  const worker = new Worker(join(PACKAGE_ROOT, "bench", "worker-entry.mjs"), {
    workerData: { job, entry: import.meta.url, client: loadClient },
  });
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  const result = new Promise<JobResult>((resolve, reject) => {
    worker.on("message", (m: { ready?: true; result?: JobResult }) => {
      if (m.ready) ready();
      if (m.result) {
        resolve(m.result);
        void worker.terminate();
      }
    });
    worker.on("error", reject);
  });
  return { ready: readyP, go: () => worker.postMessage("go"), stop: () => worker.postMessage("stop"), result };
}
