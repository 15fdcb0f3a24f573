import * as pprof from "@datadog/pprof";
import type { FastifyInstance, FastifyReply } from "fastify";
import { redactCommandLine } from "../../config/config.js";

/** Heap sampling: one sample per 512 KiB allocated on average, 64 frames deep (pprof's defaults for Node). */
const HEAP_INTERVAL_BYTES = 512 * 1024;
const HEAP_STACK_DEPTH = 64;
/** Go's default CPU profile length, and the longest we take. */
const DEFAULT_SECONDS = 30;
const MAX_SECONDS = 300;

let heapStarted = false;
/** Only one CPU profile at a time, as Go's runtime allows. */
let cpuBusy = false;

/**
 * --enable-pprof: `/debug/pprof/`, as etcd serves it, with profiles of this
 * Node process in pprof's format (gzipped protobuf), which `go tool pprof`
 * and `pprof` read: `profile?seconds=N` (CPU, sampled by V8's profiler for
 * N seconds, 30 by default) and `heap` (sampled allocations still live, from
 * when the flag started sampling). Go's runtime-only profiles (goroutine,
 * block, mutex, threadcreate, trace) have no Node counterpart and answer 404.
 */
export function registerPprof(app: FastifyInstance): void {
  if (!heapStarted) {
    pprof.heap.start(HEAP_INTERVAL_BYTES, HEAP_STACK_DEPTH);
    heapStarted = true;
  }
  app.get("/debug/pprof/", async (_req, reply) =>
    reply
      .type("text/plain; charset=utf-8")
      .send(
        "/debug/pprof/\n\nprofile  CPU profile; ?seconds=N (default 30)\nheap     sampled live heap allocations\ncmdline  the command line\n",
      ),
  );
  app.get("/debug/pprof/cmdline", async (_req, reply) =>
    reply.type("text/plain; charset=utf-8").send(redactCommandLine(process.argv).join("\x00")),
  );
  app.get("/debug/pprof/heap", async (_req, reply) => send(reply, "heap", await pprof.encode(pprof.heap.profile())));
  app.get<{ Querystring: { seconds?: string } }>("/debug/pprof/profile", async (req, reply) => {
    const seconds = req.query.seconds === undefined ? DEFAULT_SECONDS : Number(req.query.seconds);
    if (!Number.isInteger(seconds) || seconds <= 0 || seconds > MAX_SECONDS) {
      return reply.code(400).type("text/plain").send(`bad seconds: want an integer from 1 to ${MAX_SECONDS}\n`);
    }
    if (cpuBusy) {
      return reply.code(500).type("text/plain").send("Could not enable CPU profiling: cpu profiling already in use\n");
    }
    cpuBusy = true;
    try {
      pprof.time.start({ durationMillis: seconds * 1000 });
      await new Promise((r) => setTimeout(r, seconds * 1000));
      return send(reply, "profile", await pprof.encode(pprof.time.stop()));
    } finally {
      cpuBusy = false;
    }
  });
  app.get("/debug/pprof/*", async (_req, reply) => reply.code(404).type("text/plain").send("Unknown profile\n"));
}

function send(reply: FastifyReply, name: string, profile: Buffer): FastifyReply {
  return reply
    .type("application/octet-stream")
    .header("content-disposition", `attachment; filename="${name}"`)
    .send(profile);
}
