import * as http from "node:http";
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import type { ServerTls } from "../config/config.js";
import type { NativeLane } from "./native-lane.js";

/** Memory one HTTP/2 session may use, in MB (node's default is 10). */
const SESSION_MEMORY_MB = 256;

/** The client preface every HTTP/2 connection starts with (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface ListenerOptions {
  /** PEM server certificate and key; when set, the port speaks TLS with ALPN. */
  tls?: ServerTls;
  /** SETTINGS_MAX_CONCURRENT_STREAMS announced to HTTP/2 clients. */
  maxConcurrentStreams: number;
  /** Fires for every HTTP/2 session, e.g. to log protocol errors. */
  onSessionError?: (err: Error) => void;
  /** Takes the HTTP/2 streams it can serve before the request handler sees them. */
  nativeLane?: NativeLane;
  /** Filled with the open HTTP/2 sessions, so shutdown can send GOAWAY and, later, force them closed. */
  sessions?: Set<http2.Http2Session>;
  /** gRPC keepalive toward clients (--grpc-keepalive-*). */
  keepalive?: ServerKeepalive;
}

export interface ServerKeepalive {
  /** Clients pinging more often than this get strikes; past two, GOAWAY (--grpc-keepalive-min-time). */
  minTimeMs: number;
  /** Ping each client this often (--grpc-keepalive-interval); 0 disables. */
  intervalMs: number;
  /** Close a connection whose ping is not answered within this (--grpc-keepalive-timeout); 0 disables. */
  timeoutMs: number;
}

/**
 * One port for every client: HTTP/2 (etcdctl, grpc-go, grpc-js, browsers over
 * TLS) and HTTP/1.1 (browsers and curl over cleartext).
 *
 * Over TLS, ALPN picks the protocol. In cleartext, the first bytes decide: the
 * HTTP/2 preface means prior-knowledge h2c, anything else is HTTP/1.1. The
 * returned server is what Fastify's serverFactory expects.
 */
export function createListener(handler: RequestHandler, options: ListenerOptions): http.Server {
  const settings = { maxConcurrentStreams: options.maxConcurrentStreams };
  // node refuses new streams once a session holds 10 MB; a connection that
  // multiplexes thousands of watch or keep-alive streams needs more.
  const maxSessionMemory = SESSION_MEMORY_MB;
  if (options.tls) {
    const secure = http2.createSecureServer(
      {
        ...options.tls,
        // With a trusted CA, client certificates are required and verified (etcd's --trusted-ca-file).
        requestCert: options.tls.ca !== undefined,
        rejectUnauthorized: options.tls.ca !== undefined,
        allowHTTP1: true,
        settings,
        maxSessionMemory,
      },
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    watchSessions(secure, options);
    return secure as unknown as http.Server;
  }

  const h1 = http.createServer(handler as http.RequestListener);
  const h2 = http2.createServer(
    { settings, maxSessionMemory },
    handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  watchSessions(h2, options);
  const h1Accept = h1.listeners("connection")[0] as (socket: Socket) => void;
  h1.removeAllListeners("connection");
  h1.on("connection", (socket: Socket) => {
    socket.once("error", () => socket.destroy());
    const sniff = () => {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) return;
      const n = Math.min(chunk.length, H2_PREFACE.length);
      const looksH2 = chunk.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      socket.unshift(chunk);
      if (looksH2 && n < H2_PREFACE.length) return; // wait for more bytes to decide
      socket.removeListener("readable", sniff);
      if (looksH2) {
        // node's http.Server accepts sockets half-open; an HTTP/2 session only
        // tears down on 'close', so a client that dies after sending FIN would
        // leave its upstream streams (watches!) open forever.
        socket.allowHalfOpen = false;
        h2.emit("connection", socket);
      } else {
        h1Accept.call(h1, socket);
      }
    };
    socket.on("readable", sniff);
  });
  h1.on("close", () => h2.close());
  return h1;
}

function watchSessions(server: http2.Http2Server | http2.Http2SecureServer, options: ListenerOptions): void {
  const lane = options.nativeLane;
  if (lane) {
    // node's compatibility layer turns 'stream' events into requests for the
    // handler; the lane gets first pick, so its streams skip that layer.
    const compat = server.listeners("stream") as Array<(...args: unknown[]) => void>;
    server.removeAllListeners("stream");
    server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      if (lane.handle(stream, headers)) return;
      for (const listener of compat) listener.call(server, stream, headers, ...rest);
    });
  }
  server.on("sessionError", (err) => options.onSessionError?.(err));
  server.on("session", (session) => {
    session.on("error", (err) => options.onSessionError?.(err));
    if (options.keepalive) applyKeepalive(session, options.keepalive);
    if (options.sessions) {
      const sessions = options.sessions;
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    }
  });
}

/** grpc-go's limit: a third ping too soon closes the connection. */
const MAX_PING_STRIKES = 2;
/** grpc-go's expectation for a client without streams: no keepalive pings at all (2 h). */
const IDLE_PING_INTERVAL_MS = 2 * 60 * 60 * 1000;

/**
 * gRPC keepalive as etcd's server applies it (grpc-go's enforcement policy,
 * with pings not permitted without streams): a client that pings too often
 * gets strikes, which new streams clear, and after two it is sent GOAWAY
 * ENHANCE_YOUR_CALM "too_many_pings". The server also pings every client each
 * interval and closes the connection if the ping goes unanswered.
 */
function applyKeepalive(session: http2.Http2Session, policy: ServerKeepalive): void {
  let lastPingAt = 0;
  let strikes = 0;
  let streams = 0;
  session.on("stream", (stream: http2.Http2Stream) => {
    streams++;
    strikes = 0; // grpc-go forgives a connection that is being used
    stream.once("close", () => streams--);
  });
  session.on("ping", () => {
    const now = Date.now();
    const minimum = streams > 0 ? policy.minTimeMs : IDLE_PING_INTERVAL_MS;
    if (lastPingAt + minimum > now) strikes++;
    lastPingAt = now;
    if (strikes > MAX_PING_STRIKES && !session.closed) {
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from("too_many_pings"));
      session.close();
    }
  });
  if (policy.intervalMs <= 0) return;
  const pinger = setInterval(() => {
    if (session.closed || session.destroyed) return;
    const timer = policy.timeoutMs > 0 ? setTimeout(() => session.destroy(), policy.timeoutMs).unref() : undefined;
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err && !session.destroyed) session.destroy();
      });
    } catch {
      clearTimeout(timer); // the session is going away anyway
    }
  }, policy.intervalMs);
  pinger.unref();
  session.once("close", () => clearInterval(pinger));
}
