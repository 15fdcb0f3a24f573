// HTTP/2 conformance: h2spec (../shared/tools/h2spec), strict, against the
// proxy with default flags, over h2c and TLS, on the path bridged to node's
// HTTP/2 server ("/") and as gRPC calls to a real method (the native lane).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makePki, type TestPki } from "../helpers/certs.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { startCli } from "../helpers/cli.js";
import { repoPath } from "../helpers/repo.js";
import {
  attacker,
  END_HEADERS,
  END_STREAM,
  frame as h2frame,
  grpcMessage,
  grpcRequestBlock,
  literal,
  sleep,
  T,
  u32,
  type Seen,
} from "../helpers/h2-attacker.js";

const PROTOCOL_ERROR = 0x1;
const STREAM_CLOSED = 0x5;
const CANCEL = 0x8;

const H2SPEC = repoPath("..", "shared", "tools", "h2spec", "h2spec");

/**
 * The cases a gRPC method cannot pass, whatever the server: they send a
 * unary call with no request message and expect a response body (or a
 * stream that stays open). Such a call can only fail, with no body; etcd
 * itself never answers it. The README's security section lists them.
 */
const GRPC_EXCEPTIONS = new Set([
  "generic/2: Sends a WINDOW_UPDATE frame on half-closed (remote) stream",
  "generic/2: Sends a PRIORITY frame on half-closed (remote) stream",
  "http2/5.1.2: Sends HEADERS frames that causes their advertised concurrent stream limit to be exceeded",
]);

interface Outcome {
  passed: number;
  failed: string[];
  skipped: string[];
}

/** Runs h2spec and reads its JUnit report: every case, by section and description. */
function h2spec(address: string, args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  const [host, port] = address.split(":");
  const dir = mkdtempSync(join(tmpdir(), "ecp-h2spec-"));
  const report = join(dir, "report.xml");
  return new Promise((resolve, reject) => {
    execFile(
      H2SPEC,
      ["-h", host!, "-p", port!, "--strict", "-j", report, ...args],
      { env: { ...process.env, ...env }, timeout: 300_000, maxBuffer: 16 << 20 },
      (err) => {
        try {
          if (!existsSync(report)) return reject(err ?? new Error("h2spec wrote no report"));
          const xml = readFileSync(report, "utf8");
          const outcome: Outcome = { passed: 0, failed: [], skipped: [] };
          for (const m of xml.matchAll(
            /<testcase package="([^"]*)" classname="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g,
          )) {
            const name = `${m[1]}: ${m[2]!.replace(/&#34;/g, '"').replace(/&quot;/g, '"')}`;
            const body = m[4] ?? "";
            if (body.includes("<failure") || body.includes("<error")) outcome.failed.push(name);
            else if (body.includes("<skipped")) outcome.skipped.push(name);
            else outcome.passed++;
          }
          resolve(outcome);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}

for (const transport of ["h2c", "tls"] as const) {
  describe(`h2spec, strict, default flags, over ${transport}`, () => {
    let etcd: EtcdCluster;
    let proxy: Awaited<ReturnType<typeof startCli>>;
    let pki: TestPki | undefined;
    const tlsArgs = () => (transport === "tls" ? ["-t", "-k"] : []);

    before(async () => {
      etcd = await startEtcd(1);
      const args: string[] = [];
      if (transport === "tls") {
        pki = makePki();
        args.push(`--cert-file=${pki.server.cert}`, `--key-file=${pki.server.key}`);
      }
      proxy = await startCli(etcd.endpoints, args);
    });
    after(async () => {
      proxy?.child.kill("SIGTERM");
      await proxy?.exited;
      await etcd?.stop();
      pki?.remove();
    });

    it("passes every case on the path bridged to node's HTTP/2 server", async () => {
      const outcome = await h2spec(proxy.address, [...tlsArgs(), "-P", "/"]);
      assert.deepEqual(outcome.failed, []);
      assert.deepEqual(outcome.skipped, []);
      assert.equal(outcome.passed, 147);
    });

    /**
     * Opens stream 1 with `request`, waits until the proxy has answered it
     * (an unknown method's answer comes at once), then sends `rest`, and
     * returns what the proxy says once `said` holds: the order a loaded
     * machine can give h2spec's cases, made on purpose.
     */
    async function afterTheAnswer(request: Buffer[], rest: Buffer[], said: (seen: Seen) => boolean): Promise<Seen> {
      const client = await attacker(proxy.address, { tls: transport === "tls" });
      try {
        client.handshake();
        for (const frame of request) client.write(frame);
        for (let i = 0; i < 100 && client.seen.endedByHeaders === 0; i++) await sleep(20);
        assert.equal(client.seen.endedByHeaders, 1, "the call was answered before the rest of what the client sends");
        for (const frame of rest) client.write(frame);
        for (let i = 0; i < 100 && !said(client.seen); i++) await sleep(20);
        return client.seen;
      } finally {
        client.destroy();
      }
    }
    const nope = (flags: number, extra: Buffer[] = []) =>
      h2frame(T.HEADERS, END_HEADERS | flags, 1, grpcRequestBlock("/etcdserverpb.Nope/Nope", extra));
    const resetWith = (code: number) => (seen: Seen) => seen.rst.get(1) === code;

    it("answers malformed trailers the same whether or not the response came first", async () => {
      // h2spec's http2/8.1.2.1 sends HEADERS, DATA and then trailers with a pseudo-header, in three writes.
      const seen = await afterTheAnswer(
        [nope(0), h2frame(T.DATA, 0, 1, grpcMessage(Buffer.alloc(0)))],
        [h2frame(T.HEADERS, END_HEADERS, 1, literal(":path", "/trailer"))],
        resetWith(PROTOCOL_ERROR),
      );
      assert.equal(seen.rst.get(1), PROTOCOL_ERROR);
    });

    it("answers DATA past the request's content-length with PROTOCOL_ERROR, whether or not the response came first", async () => {
      // h2spec's http2/8.1.2.6 sends HEADERS with content-length 1, then 4 bytes of DATA.
      const seen = await afterTheAnswer(
        [nope(0, [literal("content-length", "1")])],
        [h2frame(T.DATA, END_STREAM, 1, Buffer.from("test"))],
        resetWith(PROTOCOL_ERROR),
      );
      assert.equal(seen.rst.get(1), PROTOCOL_ERROR);
    });

    it("answers HEADERS after the client's RST_STREAM with STREAM_CLOSED, whether or not the response came first", async () => {
      // h2spec's http2/5.1 sends HEADERS, RST_STREAM and HEADERS again.
      const seen = await afterTheAnswer(
        [nope(0)],
        [h2frame(T.RST_STREAM, 0, 1, u32(CANCEL)), nope(END_STREAM)],
        (seen) => seen.goaway !== undefined || seen.rst.get(1) === STREAM_CLOSED,
      );
      assert.ok(
        seen.goaway === STREAM_CLOSED || seen.rst.get(1) === STREAM_CLOSED,
        `STREAM_CLOSED (goaway ${seen.goaway}, reset ${seen.rst.get(1)})`,
      );
    });

    it("passes every case a gRPC method can pass, sent as gRPC calls to KV/Range", async () => {
      const outcome = await h2spec(proxy.address, [...tlsArgs(), "-P", "/etcdserverpb.KV/Range"], { H2SPEC_GRPC: "1" });
      assert.deepEqual(
        outcome.failed.filter((name) => !GRPC_EXCEPTIONS.has(name)),
        [],
        "unexpected failures",
      );
      assert.ok(outcome.passed >= 147 - GRPC_EXCEPTIONS.size - outcome.skipped.length);
      assert.ok(outcome.passed >= 140, `only ${outcome.passed} passed`);
    });
  });
}
