import * as http from "node:http";
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import type { ServerTls } from "../../config/config.js";
import { encodeHeaders } from "../../http2/hpack.js";
import { H2ServerConnection, type H2Stream } from "../../http2/server.js";
import type { Admission, Refusal, RequestHead } from "./admission.js";
import { createBridge } from "./h2-bridge.js";
import type { NativeLane } from "../native/native-lane.js";

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
  /**
   * The native gRPC lane. When set, every HTTP/2 connection is served by the
   * proxy's own HTTP/2 server: the lane takes the streams it can serve, and
   * the rest reach the request handler through node's HTTP/2 server.
   */
  nativeLane?: NativeLane;
  /** Filled with the open HTTP/2 connections, so shutdown can send GOAWAY and, later, force them closed. */
  sessions?: Set<ClosableSession>;
  /** gRPC keepalive toward clients (--grpc-keepalive-*). */
  keepalive?: ServerKeepalive;
  /** Which requests are served at all (Host and cross-site checks), judged before anything else. */
  admission?: Admission;
}

export interface ServerKeepalive {
  /** Clients pinging more often than this get strikes; past two, GOAWAY (--grpc-keepalive-min-time). */
  minTimeMs: number;
  /** Ping each client this often (--grpc-keepalive-interval); 0 disables. */
  intervalMs: number;
  /** Close a connection whose ping is not answered within this (--grpc-keepalive-timeout); 0 disables. */
  timeoutMs: number;
}

/** What shutdown needs of an HTTP/2 connection, node's or the proxy's own. */
export interface ClosableSession {
  close(): void;
  destroy(): void;
}

/**
 * One port for every client: HTTP/2 (etcdctl, grpc-go, grpc-js, browsers over
 * TLS) and HTTP/1.1 (browsers and curl over cleartext).
 *
 * Over TLS, ALPN picks the protocol. In cleartext, the first bytes decide: the
 * HTTP/2 preface means prior-knowledge h2c, anything else is HTTP/1.1. The
 * returned server is what Fastify's serverFactory expects.
 */
export function createListener(serve: RequestHandler, options: ListenerOptions): http.Server {
  // Streams of the proxy's own HTTP/2 are admitted as they open; node's servers admit here.
  const handler = options.admission ? admitted(serve, options.admission) : serve;
  const settings = { maxConcurrentStreams: options.maxConcurrentStreams };
  // node refuses new streams once a session holds 10 MB; a connection that
  // multiplexes thousands of watch or keep-alive streams needs more.
  const maxSessionMemory = SESSION_MEMORY_MB;
  const ownH2 = options.nativeLane ? ownHttp2(serve, options.nativeLane, options) : undefined;
  const serveOwnH2 = ownH2?.serve;
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
        // A connection that never finishes its TLS handshake holds a socket for nothing.
        handshakeTimeout: SNIFF_TIMEOUT_MS,
      },
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    watchSessions(secure, options);
    if (serveOwnH2) {
      // ALPN has spoken: h2 connections are ours, HTTP/1.1 stays with node.
      const nodeAccept = secure.listeners("secureConnection")[0] as (socket: Socket) => void;
      secure.removeAllListeners("secureConnection");
      secure.on("secureConnection", (socket: Socket & { alpnProtocol?: string | false }) => {
        if (socket.alpnProtocol === "h2") serveOwnH2(socket);
        else nodeAccept.call(secure, socket);
      });
    }
    secure.on("close", () => ownH2?.close());
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
    sniffProtocol(socket, (protocol) => {
      if (protocol === "h2") {
        // node's http.Server accepts sockets half-open; an HTTP/2 session only
        // tears down on 'close', so a client that dies after sending FIN would
        // leave its upstream streams (watches!) open forever.
        socket.allowHalfOpen = false;
        if (serveOwnH2) {
          serveOwnH2(socket);
          socket.resume();
        } else h2.emit("connection", socket);
      } else {
        h1Accept.call(h1, socket);
        socket.resume();
      }
    });
  });
  // Bytes that are not HTTP/1.1 at all (no method, no version) are another
  // protocol, or an HTTP/2 client with a bad preface: close, as an HTTP/2
  // server does, rather than answer in HTTP/1.1. Other parse errors keep
  // node's 400.
  h1.on("clientError", (err: Error & { code?: string }, socket: Socket) => {
    if (NOT_HTTP1.has(err.code ?? "") || !socket.writable) return void socket.destroy();
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
  });
  h1.on("close", () => {
    h2.close();
    ownH2?.close();
  });
  return h1;
}

/** llhttp's errors for a first line that no HTTP/1.x client would send. */
const NOT_HTTP1 = new Set(["HPE_INVALID_METHOD", "HPE_INVALID_VERSION", "HPE_INVALID_CONSTANT"]);

/** How long a new cleartext connection may take to send enough bytes to tell HTTP/2 from HTTP/1.1. */
export const SNIFF_TIMEOUT_MS = 5_000;

/**
 * Reads a new cleartext connection's first bytes until they tell prior-
 * knowledge HTTP/2 (the client preface) from HTTP/1.1, then gives them
 * back to the socket and says which. The bytes are held here, not pushed
 * back and read again: unshifting a partial preface made the socket
 * readable again at once, which spun the event loop forever on one byte.
 * A connection that says too little in time is closed.
 */
export function sniffProtocol(socket: Socket, decided: (protocol: "h2" | "http/1.1") => void): void {
  const seen: Buffer[] = [];
  let bytes = 0;
  const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
  timer.unref();
  const done = (protocol: "h2" | "http/1.1") => {
    clearTimeout(timer);
    socket.removeListener("data", onData);
    socket.removeListener("close", onClose);
    // Paused, the given-back bytes wait in the socket's buffer for whoever
    // reads next (node's HTTP/2 server reads them itself; others resume).
    socket.pause();
    socket.unshift(Buffer.concat(seen, bytes));
    decided(protocol);
  };
  const onData = (chunk: Buffer) => {
    seen.push(chunk);
    bytes += chunk.length;
    const head = seen.length === 1 ? chunk : Buffer.concat(seen, bytes);
    const n = Math.min(bytes, H2_PREFACE.length);
    if (!head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) done("http/1.1");
    else if (n === H2_PREFACE.length) done("h2");
  };
  const onClose = () => clearTimeout(timer);
  socket.on("data", onData);
  socket.once("close", onClose);
}

/**
 * Serves HTTP/2 connections with the proxy's own server: the native lane
 * takes its streams, and the rest cross an in-process bridge to a node
 * HTTP/2 server running the same request handler.
 */
function ownHttp2(
  handler: RequestHandler,
  lane: NativeLane,
  options: ListenerOptions,
): { serve: (socket: Socket) => void; close: () => void } {
  const behindBridge = http2.createServer(
    // Limits are the outer connection's business; the bridge carries every bridged stream.
    {
      settings: { maxConcurrentStreams: 2 ** 31 - 1 },
      maxSessionMemory: SESSION_MEMORY_MB * 4,
      // node counts streams it rejected, and invalid frames, over the session's life and then
      // destroys it; this one session carries every client's bridged streams, each client bounded
      // by the proxy's own HTTP/2, so one client's bad streams must not cost the others theirs.
      maxSessionRejectedStreams: 2 ** 31 - 1,
      maxSessionInvalidFrames: 2 ** 31 - 1,
    },
    handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  );
  const bridge = createBridge(behindBridge);
  const serve = (socket: Socket) => {
    // A keep-alive answer or a watch event must not wait for Nagle (TLS sockets come without this).
    socket.setNoDelay(true);
    const connection = new H2ServerConnection(socket, {
      maxConcurrentStreams: options.maxConcurrentStreams,
      onStream: (stream) => {
        const refusal = options.admission?.check(streamHead(stream));
        if (refusal) refuseStream(stream, refusal);
        else if (!lane.handle(stream)) bridge.forward(stream);
      },
    });
    track(connection, options, () => connection.bytesWritten);
  };
  return {
    serve,
    close: () => {
      bridge.close();
      behindBridge.close();
    },
  };
}

/** Serves only what the admission lets through; the rest is answered before its body is read. */
export function admitted(serve: RequestHandler, admission: Admission): RequestHandler {
  return (req, res) => {
    const headers = req.headers;
    const refusal = admission.check({
      method: req.method ?? "GET",
      url: req.url ?? "/",
      host: (headers[":authority"] as string | undefined) ?? headers.host,
      origin: headers.origin,
      fetchSite: headers["sec-fetch-site"] as string | undefined,
    });
    if (!refusal) return serve(req, res);
    const body = Buffer.from(refusal.body);
    (res as http.ServerResponse).writeHead(refusal.status, { ...REFUSAL_HEADERS, "content-length": body.length });
    res.end(body);
  };
}

function streamHead(stream: H2Stream): RequestHead {
  const headers = stream.headers;
  return {
    method: headers[":method"] ?? "GET",
    url: headers[":path"] ?? "/",
    host: headers[":authority"] ?? headers.host,
    origin: headers.origin,
    fetchSite: headers["sec-fetch-site"],
  };
}

function refuseStream(stream: H2Stream, refusal: Refusal): void {
  const body = Buffer.from(refusal.body);
  stream.respond(
    encodeHeaders([
      [":status", String(refusal.status)],
      ...Object.entries(REFUSAL_HEADERS),
      ["content-length", String(body.length)],
    ]),
  );
  stream.write(body);
  stream.end();
}

const REFUSAL_HEADERS = { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" };

function watchSessions(server: http2.Http2Server | http2.Http2SecureServer, options: ListenerOptions): void {
  server.on("sessionError", (err) => options.onSessionError?.(err));
  // node's session hides its socket behind a proxy, which still reads its byte count.
  server.on("session", (session) =>
    track(session, options, () => (session.socket as Socket | undefined)?.bytesWritten ?? 0),
  );
}

/** Error logging, keepalive and shutdown bookkeeping for one HTTP/2 connection of either kind. */
function track(
  session: KeepaliveSession & { on(event: "error", fn: (err: Error) => void): unknown },
  options: ListenerOptions,
  bytesWritten: () => number,
): void {
  session.on("error", (err) => options.onSessionError?.(err));
  if (options.keepalive) applyKeepalive(session, options.keepalive, bytesWritten);
  if (options.sessions) {
    const sessions = options.sessions;
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  }
}

/** What keepalive needs of an HTTP/2 connection: node's Http2Session and H2ServerConnection both fit. */
interface KeepaliveSession extends ClosableSession {
  on(event: "stream", fn: (stream: { once(event: "close", fn: () => void): unknown }) => void): unknown;
  on(event: "ping", fn: () => void): unknown;
  once(event: "close", fn: () => void): unknown;
  goaway(code: number, lastStreamId: number, data: Buffer): void;
  ping(callback: (err: Error | null) => void): boolean;
  readonly closed: boolean;
  readonly destroyed: boolean;
}

/** grpc-go's limit: a third ping too soon closes the connection. */
const MAX_PING_STRIKES = 2;
/** grpc-go's expectation for a client without streams: no keepalive pings at all (2 h). */
const IDLE_PING_INTERVAL_MS = 2 * 60 * 60 * 1000;
/** A PING frame, and so the server's ACK of one: a 9-byte frame header and 8 bytes of data. */
const PING_FRAME_BYTES = 17;

/**
 * gRPC keepalive as etcd's server applies it (grpc-go's enforcement policy,
 * with pings not permitted without streams): a client that pings too often
 * gets strikes, which new streams clear, and after two it is sent GOAWAY
 * ENHANCE_YOUR_CALM "too_many_pings". As in grpc-go, a ping that follows
 * anything the server sent besides the last ping's ACK is forgiven: grpc-go
 * clients ping to measure bandwidth as they receive data, so a watch stream
 * with events flowing draws pings well inside the minimum time. The server
 * also pings every client each interval and closes the connection if the
 * ping goes unanswered.
 */
function applyKeepalive(session: KeepaliveSession, policy: ServerKeepalive, bytesWritten: () => number): void {
  let lastPingAt = 0;
  let strikes = 0;
  let streams = 0;
  let writtenAtLastPing = 0;
  session.on("stream", (stream) => {
    streams++;
    strikes = 0; // grpc-go forgives a connection that is being used
    stream.once("close", () => streams--);
  });
  session.on("ping", () => {
    const now = Date.now();
    const written = bytesWritten();
    const sentSince = written - writtenAtLastPing;
    writtenAtLastPing = written;
    const minimum = streams > 0 ? policy.minTimeMs : IDLE_PING_INTERVAL_MS;
    if (sentSince > PING_FRAME_BYTES) strikes = 0;
    else if (lastPingAt + minimum > now) strikes++;
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
