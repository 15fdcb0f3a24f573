// The proxy's own HTTP/2, against node's HTTP/2 (nghttp2) as the peer on
// the other end of a real loopback connection.
import assert from "node:assert/strict";
import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { H2ClientConnection, type H2ClientStream } from "../../src/http2/client.js";
import { encodeHeaders } from "../../src/http2/hpack.js";
import { H2ServerConnection, type H2Stream } from "../../src/http2/server.js";
import { ReadLoan } from "../../src/http2/read-loan.js";
import { attacker, END_HEADERS, frame, grpcRequestBlock, sleep, T } from "../helpers/h2-attacker.js";

const BIG = Buffer.alloc(3 << 20, 7); // far beyond every default flow-control window

describe("own HTTP/2 server, node's HTTP/2 client", () => {
  let server: net.Server;
  let url: string;
  const connections: H2ServerConnection[] = [];

  /** Echoes the request body back, with the request's path in a trailer. */
  const echo = (stream: H2Stream) => {
    stream.respond(
      encodeHeaders([
        [":status", 200],
        ["content-type", "application/octet-stream"],
      ]),
    );
    if (stream.headers[":path"] === "/burst") {
      // A hundred small writes in one tick, as a watch event fanned out to a stream's watchers.
      for (let i = 0; i < 100; i++) stream.write(Buffer.from(`message ${String(i).padStart(3, "0")};`));
      stream.end(encodeHeaders([["x-path", "/burst"]]));
      return;
    }
    stream.onBody = (chunk) => stream.write(chunk);
    stream.onEnd = () => stream.end(encodeHeaders([["x-path", stream.headers[":path"]!]]));
  };

  before(async () => {
    server = net.createServer((socket) => {
      connections.push(new H2ServerConnection(socket, { maxConcurrentStreams: 50, onStream: echo }));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    for (const connection of connections) connection.destroy();
    server.close();
  });

  const call = (session: http2.ClientHttp2Session, path: string, body: Buffer) =>
    new Promise<{ body: Buffer; trailers: http2.IncomingHttpHeaders; status: unknown }>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path });
      const chunks: Buffer[] = [];
      let status: unknown;
      let trailers: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => (status = h[":status"]));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("trailers", (t) => (trailers = t));
      req.on("end", () => resolve({ body: Buffer.concat(chunks), trailers, status }));
      req.on("error", reject);
      req.end(body);
    });

  it("echoes a 3 MiB body both ways through flow control, with trailers", async () => {
    const session = http2.connect(url);
    const { body, trailers, status } = await call(session, "/big", BIG);
    assert.equal(status, 200);
    assert.ok(body.equals(BIG));
    assert.equal(trailers["x-path"], "/big");
    session.close();
  });

  it("reads every request's path right when a client sends many, each Huffman-coded and never indexed", async () => {
    // nghttp2 never indexes :path; the server remembers recent Huffman strings, and must never mix them up.
    const session = http2.connect(url);
    for (let i = 0; i < 300; i++) {
      const path = `/etcdserverpb.KV/${i % 2 ? "Range" : "Put"}/${(i * 7919) % 211}`;
      const { trailers } = await call(session, path, Buffer.from("x"));
      assert.equal(trailers["x-path"], path);
    }
    session.close();
  });

  it("sends the writes of one tick as one DATA frame", async () => {
    const session = http2.connect(url);
    const req = session.request({ ":method": "POST", ":path": "/burst" });
    req.end();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    await once(req, "end");
    const expected = Array.from({ length: 100 }, (_, i) => `message ${String(i).padStart(3, "0")};`).join("");
    assert.equal(Buffer.concat(chunks).toString(), expected, "every write, in order");
    assert.equal(chunks.length, 1, "in one DATA frame");
    session.close();
  });

  it("serves many concurrent streams on one connection", async () => {
    const session = http2.connect(url);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => call(session, `/s/${i}`, Buffer.from(`body ${i}`))),
    );
    results.forEach((r, i) => {
      assert.equal(r.body.toString(), `body ${i}`);
      assert.equal(r.trailers["x-path"], `/s/${i}`);
    });
    session.close();
  });

  it("refuses streams beyond SETTINGS_MAX_CONCURRENT_STREAMS, and a client reset closes the stream", async () => {
    const before = connections.length;
    const session = http2.connect(url);
    // Open streams that never end, past the limit of 50.
    const streams = Array.from({ length: 60 }, () => session.request({ ":method": "POST", ":path": "/open" }));
    const codes = await Promise.all(
      streams.slice(50).map(
        (s) =>
          new Promise<number>((resolve) => {
            s.on("error", () => {});
            s.on("close", () => resolve(s.rstCode));
          }),
      ),
    );
    assert.deepEqual(new Set(codes), new Set([http2.constants.NGHTTP2_REFUSED_STREAM]));
    const connection = connections[before]!;
    assert.equal(connection.size, 50);
    streams[0]!.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => connection.size === 49);
    session.destroy();
    await until(() => connection.destroyed);
  });
});

describe("own HTTP/2 server under a rapid-reset flood", () => {
  it("sends GOAWAY ENHANCE_YOUR_CALM to a client that opens and resets streams without end", async () => {
    const server = net.createServer((socket) => {
      new H2ServerConnection(socket, {
        maxConcurrentStreams: 100,
        onStream: (stream) => stream.respond(encodeHeaders([[":status", 200]])), // never ends on its own
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    session.on("error", () => {});
    const goaway = new Promise<number>((resolve) => session.on("goaway", (code) => resolve(code)));
    // Well past the burst the server allows, in waves below its stream limit.
    for (let wave = 0; wave < 15 && !session.destroyed && !session.closed; wave++) {
      const streams = Array.from({ length: 90 }, () => {
        const s = session.request({ ":method": "POST", ":path": "/flood" });
        s.on("error", () => {});
        return s;
      });
      await Promise.all(streams.map((s) => new Promise((r) => s.once("response", r).once("close", r))));
      for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
    }
    assert.equal(await goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
    server.close();
  });
});

describe("own HTTP/2 client, node's HTTP/2 server", () => {
  let server: http2.Http2Server;
  let port: number;
  const sessions: http2.ServerHttp2Session[] = [];
  before(async () => {
    server = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
    server.on("stream", (stream, headers) => {
      if (headers[":path"] === "/hold") {
        stream.on("end", () => {
          stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
          stream.respond({ ":status": 200 });
          stream.end("held");
        });
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        stream.respond({ ":status": 200, "x-token": String(headers["token"]) }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.concat(chunks));
      });
    });
    server.on("session", (session) => sessions.push(session));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    for (const session of sessions) session.destroy();
    server.close();
  });

  const dial = () => {
    const socket = net.connect({ host: "127.0.0.1", port });
    return new H2ClientConnection(socket, "connect");
  };
  const request = (connection: H2ClientConnection, path: string, extra: Array<[string, string]> = []) =>
    connection.request(
      encodeHeaders([[":method", "POST"], [":scheme", "http"], [":authority", "x"], [":path", path], ...extra]),
    );
  const collect = (stream: H2ClientStream) =>
    new Promise<{ body: Buffer; err: Error | undefined }>((resolve) => {
      const chunks: Buffer[] = [];
      stream.onBody = (c) => chunks.push(c);
      stream.onClose((err) => resolve({ body: Buffer.concat(chunks), err }));
    });

  it("sends a 3 MiB request and reads the echo, headers and trailers", async () => {
    // (one stream at a time: the server allows no more)
    const connection = dial();
    const stream = request(connection, "/echo", [["token", "t1"]]);
    const done = collect(stream);
    stream.write(BIG);
    stream.end();
    const { body, err } = await done;
    assert.equal(err, undefined);
    assert.ok(body.equals(BIG));
    assert.equal(stream.response?.["x-token"], "t1");
    assert.equal(stream.trailers?.["grpc-status"], "0");
    connection.close();
  });

  it("marks a stream the server refused (REFUSED_STREAM) as never seen, and stops using a connection after GOAWAY", async () => {
    const connection = dial();
    // The server allows one stream at a time: the second is refused.
    const first = request(connection, "/hold");
    const second = request(connection, "/echo");
    const refused = await collect(second);
    assert.equal(second.rstCode, http2.constants.NGHTTP2_REFUSED_STREAM);
    assert.equal(refused.err, undefined);
    assert.equal(connection.mayHaveSeen(second), false);
    assert.equal(connection.mayHaveSeen(first), true);
    // The held stream answers with a GOAWAY: it still completes, then the connection is done.
    const done = collect(first);
    first.end();
    assert.equal((await done).body.toString(), "held");
    assert.equal(connection.usable, false);
    await until(() => connection.destroyed);
  });

  it("fails streams on a connection that never came up as never sent", async () => {
    const closed = net.createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const deadPort = (closed.address() as AddressInfo).port;
    closed.close();
    const connection = new H2ClientConnection(net.connect({ host: "127.0.0.1", port: deadPort }), "connect");
    const stream = request(connection, "/echo");
    const { err } = await collect(stream);
    assert.match(String((err as NodeJS.ErrnoException)?.code), /ECONNREFUSED/);
    assert.equal(connection.mayHaveSeen(stream), false);
  });
});

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(condition(), "condition not met in time");
}

describe("own HTTP/2 server, after its GOAWAY", () => {
  it("ignores frames for streams the client opened before it saw the GOAWAY", async () => {
    const server = net.createServer((socket) => {
      const connection: H2ServerConnection = new H2ServerConnection(socket, {
        maxConcurrentStreams: 10,
        // The first request starts a graceful close; it stays open, so the connection does too.
        onStream: () => connection.close(),
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const a = await attacker(`127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      a.handshake();
      a.write(frame(T.HEADERS, END_HEADERS, 1, grpcRequestBlock("/a")));
      await sleep(100);
      assert.equal(a.seen.goaway, 0, "GOAWAY NO_ERROR");
      // Sent as if before the GOAWAY arrived: a new stream and its data.
      a.write(frame(T.HEADERS, END_HEADERS, 3, grpcRequestBlock("/b")));
      a.write(frame(T.DATA, 0, 3, Buffer.from("late")));
      await sleep(100);
      assert.equal(a.seen.goaway, 0, "no second GOAWAY with PROTOCOL_ERROR");
      assert.equal(a.seen.closed, false);
    } finally {
      a.destroy();
      server.close();
    }
  });
});

describe("own HTTP/2 server, writing views it was lent", () => {
  /** Reads of 256 KiB, each a different pattern, through one buffer reused unless a write kept it. */
  const READS = 64;
  const READ_BYTES = 256 << 10;
  const FRAME_BYTES = 16 << 10;
  const pattern = (read: number, at: number) => (read * 131 + at * 7) & 0xff;
  const expected = Buffer.alloc(READS * READ_BYTES);
  for (let r = 0; r < READS; r++) for (let i = 0; i < READ_BYTES; i++) expected[r * READ_BYTES + i] = pattern(r, i);

  let server: net.Server;
  let port: number;
  let keptReads = 0;
  const open: H2ServerConnection[] = [];

  before(async () => {
    server = net.createServer((socket) => {
      const connection = new H2ServerConnection(socket, {
        maxConcurrentStreams: 10,
        onStream: (stream) => {
          stream.respond(encodeHeaders([[":status", 200]]));
          let reused = Buffer.alloc(READ_BYTES);
          let read = 0;
          const next = () => {
            if (read === READS || stream.closed) return stream.end(encodeHeaders([["x-done", "1"]]));
            expected.copy(reused, 0, read * READ_BYTES, (read + 1) * READ_BYTES);
            const loan = new ReadLoan(reused.buffer);
            for (let at = 0; at < READ_BYTES; at += FRAME_BYTES)
              stream.write(reused.subarray(at, at + FRAME_BYTES), loan);
            if (loan.settle())
              reused.fill(0xee); // the next read overwrites it
            else {
              keptReads++;
              reused = Buffer.alloc(READ_BYTES); // a write still points into it: read into a new one
            }
            read++;
            setImmediate(next);
          };
          next();
        },
      });
      open.push(connection);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.close();
    for (const connection of open) connection.destroy();
  });

  const fetch = (session: http2.ClientHttp2Session) =>
    new Promise<Buffer>((resolve, reject) => {
      const req = session.request({ ":method": "GET", ":path": "/" });
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
      req.end();
    });

  it("copies what the client's window holds back: a 64 KiB window gets every byte as it was lent", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const body = await fetch(session);
      assert.ok(body.equals(expected), "the body equals what was lent, though the lender scribbled over it");
    } finally {
      session.destroy();
    }
  });

  it("gives the buffer up when the socket cannot take a write at once (a client that stops reading)", async () => {
    // A relay that reads nothing from the server for a while: the server's socket backs up.
    let stalled = true;
    const relay = net.createServer((client) => {
      const upstream = net.connect(port, "127.0.0.1");
      client.pipe(upstream);
      upstream.pause();
      setTimeout(() => {
        stalled = false;
        upstream.resume();
      }, 400);
      upstream.on("data", (d) => client.write(d));
      upstream.on("end", () => client.end());
      for (const socket of [client, upstream]) socket.on("error", () => {});
      client.on("close", () => upstream.destroy());
    });
    relay.listen(0, "127.0.0.1");
    await once(relay, "listening");
    const session = http2.connect(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`, {
      settings: { initialWindowSize: 32 << 20 },
    });
    session.on("connect", () => session.setLocalWindowSize(64 << 20));
    const before = keptReads;
    try {
      const body = await fetch(session);
      assert.equal(stalled, false);
      assert.ok(keptReads > before, "some write was still in flight when its read was done");
      assert.ok(body.equals(expected), "the body equals what was lent");
    } finally {
      session.destroy();
      relay.close();
    }
  });
});
