import * as http2 from "node:http2";
import { Duplex } from "node:stream";
import { encodeHeaders, type OutgoingValue } from "../../http2/hpack.js";
import { ErrorCode } from "../../http2/frames.js";
import type { H2Stream } from "../../http2/server.js";

/**
 * Hands the HTTP/2 streams the native lane does not serve (gRPC-Web,
 * Connect, compressed gRPC, the gateway, the dashboard) to node's HTTP/2
 * server, where Fastify and Connect serve them as they serve any client.
 *
 * The hop is one in-process HTTP/2 connection, shared by every bridged
 * stream: requests, responses, trailers, back-pressure and resets pass
 * through unchanged. It costs CPU, but only browsers and tools take it.
 */
export interface H2Bridge {
  forward(stream: H2Stream): void;
  close(): void;
}

/**
 * Resets the bridge sends on one session before it moves new streams to a
 * fresh one. node's HTTP/2 server (nghttp2) ends a session whose peer resets
 * more than 1,000 streams in a burst (33 a second after that) with GOAWAY
 * INTERNAL_ERROR, failing every stream still on it; this session carries
 * every client's bridged streams, and each reset is a client's (h2spec's
 * full run reached it). A session that has sent this many is let drain.
 */
const RESETS_PER_SESSION = 500;

export function createBridge(server: http2.Http2Server): H2Bridge {
  let session: http2.ClientHttp2Session | undefined;
  let resetsOnSession = 0;
  const connection = (): http2.ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    resetsOnSession = 0;
    const [clientSide, serverSide] = duplexPair();
    server.emit("connection", serverSide);
    const opened = http2.connect("http://bridge.internal", {
      createConnection: () => clientSide,
      settings: { enablePush: false },
      maxSessionMemory: 1024,
    });
    opened.on("error", () => {}); // its streams report to their clients
    opened.once("close", () => {
      if (session === opened) session = undefined;
    });
    opened.unref?.();
    session = opened;
    return opened;
  };

  return {
    forward(stream) {
      let request: http2.ClientHttp2Stream;
      try {
        request = connection().request(stream.headers, { endStream: false });
      } catch {
        stream.reset(ErrorCode.INTERNAL_ERROR);
        return;
      }
      let ended = false;
      let trailers: http2.IncomingHttpHeaders | undefined;

      // The client's window gets the bytes back once node's stream has taken
      // them: a body node cannot pass on is held in the client, not here.
      // Until the handler answers, the connection's window does not: Connect
      // gathers a message whole before answering, so a client's unanswered
      // requests together hold at most that window, not 4 MiB each.
      stream.flow = "consumed";
      let answered = false;
      stream.onBody = (chunk) => request.write(chunk, () => stream.consumed(chunk.length, answered));
      stream.onEnd = () => request.end();
      const carrier = session;
      stream.onClose(() => {
        if (ended || request.closed) return;
        request.close(http2.constants.NGHTTP2_CANCEL);
        if (carrier === session && ++resetsOnSession >= RESETS_PER_SESSION) {
          session = undefined;
          carrier?.close(); // its open streams finish; new ones go to a new session
        }
      });

      request.on("response", (headers, flags) => {
        answered = true;
        stream.releaseHeld();
        const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
        if (endStream) ended = true;
        stream.respond(encodeHeaders(ordered(headers)), endStream);
      });
      request.on("data", (chunk: Buffer) => {
        if (stream.write(chunk)) return;
        request.pause();
        stream.onDrain(() => request.resume());
      });
      request.on("trailers", (headers) => (trailers = headers));
      request.on("end", () => {
        if (ended) return;
        ended = true;
        stream.end(trailers && encodeHeaders(ordered(trailers)));
      });
      request.on("error", () => {});
      request.on("close", () => {
        if (!ended) stream.reset(request.rstCode || ErrorCode.INTERNAL_ERROR);
      });
    },
    close() {
      session?.close();
    },
  };
}

/** node's header object as a field list, pseudo-headers first (RFC 9113 §8.3). */
function ordered(headers: http2.IncomingHttpHeaders): Array<[string, OutgoingValue]> {
  const pseudo: Array<[string, OutgoingValue]> = [];
  const regular: Array<[string, OutgoingValue]> = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    (name.startsWith(":") ? pseudo : regular).push([name, value]);
  }
  return [...pseudo, ...regular];
}

/** Two connected in-memory duplex streams: what one writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const side = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        peer().push(chunk);
        callback();
      },
      final(callback) {
        peer().push(null);
        callback();
      },
      destroy(err, callback) {
        peer().destroy();
        callback(err);
      },
    });
  sides.push(
    side(() => sides[1]!),
    side(() => sides[0]!),
  );
  return [sides[0]!, sides[1]!];
}
