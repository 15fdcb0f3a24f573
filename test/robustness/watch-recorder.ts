/**
 * A watch for the robustness suite that keeps every response it gets. Like
 * a careful client it resumes where it was when its stream breaks (a member
 * killed, the proxy restarted), and it ends when etcd says its revision was
 * compacted. It can stop reading for a while, as a slow client does.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { RawKv } from "./traffic.js";
import type { WatchResponseShape, WatchedEvent } from "./watch-validation.js";
import { EtcdGrpcClient, UNLIMITED } from "../helpers/grpc-client.js";
import { unpadValue } from "./padding.js";

export interface WatchOptions {
  /** Watches [prefix, prefix's end); events' keys are kept without it. */
  prefix: string;
  /** Watches every key instead, keys kept whole. */
  everything?: boolean;
  startRevision: number;
  /** Asks for progress this often, as Kubernetes does. */
  progressEveryMs?: number;
}

export interface RecordedWatch {
  responses: WatchResponseShape[];
  /** The last revision of an event it received. */
  lastEventRevision(): number;
  /** Whether it ended on a compaction. */
  compacted(): boolean;
  /** Stops reading (the stream's flow control then holds the sender back); resume() reads again. */
  pause(): void;
  resume(): void;
  /** Closes the stream; reconnect() watches again from after the last event, as a client back from a gap does. */
  disconnect(): Promise<void>;
  reconnect(): void;
  /** Ends the watch; resolves once it has. */
  stop(): Promise<void>;
}

const RESUME_AFTER_MS = 100;

/** Watches through targets[0]; each resume goes to the next target, round the list. */
export function recordWatch(targets: readonly string[], options: WatchOptions): RecordedWatch {
  // No size limit: a member back from a freeze may send megabytes of padded values in one response.
  const clients = targets.map((t) => new EtcdGrpcClient(t, undefined, UNLIMITED));
  let opened = 0;
  const responses: WatchResponseShape[] = [];
  const strip = options.everything ? 0 : options.prefix.length;
  let lastEvent = options.startRevision - 1;
  let state: "watching" | "disconnected" | "compacted" | "stopped" = "watching";
  let paused = false;
  let call: ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>;
  let ended: Promise<void>;
  let resumeTimer: NodeJS.Timeout | undefined;

  const open = () => {
    const from = lastEvent + 1;
    const stream = clients[opened++ % clients.length]!.stream("Watch", "Watch");
    call = stream;
    ended = new Promise<void>((resolve) => {
      let over = false; // "end" and "error" may both come
      const broken = () => {
        resolve();
        if (over) return;
        over = true;
        if (state === "watching") resumeTimer = setTimeout(open, RESUME_AFTER_MS);
      };
      stream.on("error", broken);
      stream.on("end", broken);
    });
    stream.on("data", (r: RawWatchResponse) => {
      const revision = Number(r.header.revision);
      if (r.created) responses.push({ kind: "created", revision });
      else if (r.canceled && Number(r.compact_revision) > 0) {
        responses.push({ kind: "compacted", revision: Number(r.compact_revision), requested: from });
        state = "compacted";
        stream.cancel();
      } else if (r.canceled)
        stream.cancel(); // resumes
      else if (r.watch_id === "-1" || r.events.length === 0) responses.push({ kind: "progress", revision });
      else {
        const events = r.events.map((e) => watchedEvent(e, strip));
        lastEvent = Math.max(lastEvent, ...events.map((e) => e.modRevision));
        responses.push({ kind: "events", events });
      }
    });
    const key = options.everything ? Buffer.from([0]) : Buffer.from(options.prefix);
    stream.write({
      create_request: { key, range_end: rangeEnd(options), start_revision: from, prev_kv: true },
    });
    if (paused) stream.pause();
  };
  open();
  const asking = options.progressEveryMs
    ? setInterval(() => call.write({ progress_request: {} }), options.progressEveryMs)
    : undefined;

  return {
    responses,
    lastEventRevision: () => lastEvent,
    compacted: () => state === "compacted",
    pause() {
      paused = true;
      call.pause();
    },
    resume() {
      paused = false;
      call.resume();
    },
    async disconnect() {
      if (state !== "watching") return;
      state = "disconnected";
      clearTimeout(resumeTimer);
      call.cancel();
      await ended;
    },
    reconnect() {
      if (state !== "disconnected") return;
      state = "watching";
      open();
    },
    async stop() {
      if (state === "watching" || state === "disconnected") state = "stopped";
      clearInterval(asking);
      clearTimeout(resumeTimer);
      call.resume();
      call.cancel();
      await ended;
      for (const c of clients) c.close();
    },
  };
}

function rangeEnd(options: WatchOptions): Buffer {
  if (options.everything) return Buffer.from([0]);
  const p = options.prefix;
  return Buffer.from(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1));
}

interface RawWatchResponse {
  header: { revision: string };
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  /** proto-loader gives enums as numbers: 0 PUT, 1 DELETE. */
  events: Array<{ type: "PUT" | "DELETE" | number; kv: RawKv; prev_kv: RawKv | null }>;
}

function watchedEvent(e: RawWatchResponse["events"][number], strip: number): WatchedEvent {
  return {
    type: e.type === "DELETE" || e.type === 1 ? "DELETE" : "PUT",
    key: e.kv.key.toString().slice(strip),
    value: e.type === "DELETE" ? "" : unpadValue(e.kv.value.toString()),
    modRevision: Number(e.kv.mod_revision),
    prevValue: e.prev_kv ? unpadValue(e.prev_kv.value.toString()) : undefined,
  };
}
