// etcd's JSON gateway, as scripts call it with curl: the same requests get
// the same answers from the proxy as from etcd itself.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the JSON gateway is served the same way in both lanes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { ETCD_LINE, ETCD_VERSION } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";

/** Runs curl exactly as a script would, with `URL` set to the server's base URL. */
function curl(base: string, command: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("bash", ["-c", command], { env: { ...process.env, URL: base }, timeout: 10_000 }, (err, stdout) =>
      err && !stdout ? reject(err) : resolve(stdout),
    ),
  );
}

/** Drops what differs between two servers (member IDs, terms) and makes revisions relative. */
function normalize(json: unknown, base: number): unknown {
  if (Array.isArray(json)) return json.map((j) => normalize(j, base));
  if (json && typeof json === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(json)) {
      if (["cluster_id", "member_id", "raft_term", "ID", "token"].includes(k)) continue;
      out[k] = /revision$/.test(k) ? Number(v) - base : normalize(v, base);
    }
    return out;
  }
  return json;
}

describe("etcd's JSON gateway", () => {
  const f = useProxy(1);

  // The README's examples, written for etcd's gateway, then the rest of its
  // HTTP surface that client libraries touch. Each line prints the body,
  // then the HTTP status on a line of its own.
  const script = [
    `curl -s -L $URL/v3/kv/put -X POST -d '{"key": "Zm9v", "value": "YmFy"}'`,
    `curl -s -L $URL/v3/kv/range -X POST -d '{"key": "Zm9v"}'`,
    `curl -s -L $URL/v3/kv/range -X POST -d '{"key": "AA==", "range_end": "AA==", "keys_only": true}'`,
    `curl -s -L $URL/v3/kv/txn -X POST -d '{"compare":[{"target":"VALUE","key":"Zm9v","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}'`,
    `curl -s -L $URL/v3/kv/deleterange -X POST -d '{"key": "Zm9v", "prev_kv": true}'`,
    `curl -s -L $URL/v3/lease/revoke -X POST -d '{"ID": 12345}'`,
    `curl -s $URL/version`,
    `curl -s $URL/v3beta/kv/range -X POST -d '{"key": "Zm9v"}'`,
    `curl -s $URL/v3alpha/kv/range -X POST -d '{"key": "Zm9v"}'`,
    `curl -s $URL/v3/kv/lease/timetolive -X POST -d '{"ID": 12345}'`,
    `curl -s $URL/v3/kv/lease/revoke -X POST -d '{"ID": 12345}'`,
    `curl -s $URL/v3/kv/lease/leases -X POST -d '{"ID": "1"}'`,
    `curl -s $URL/v3/lease/leases -X POST -d '{"ID": "1", "unknown": {"nested": [1, 2]}}'`,
    `curl -s $URL/v3/kv/range -X POST -d '{"key": "Zm9v", "bogus": true}'`,
    `curl -s $URL/v3/kv/put -X POST -d '{"value": "YmFy"}'`,
    `curl -s $URL/v3/nope -X POST -d '{}'`,
    `curl -s $URL/v3beta/nope`,
    `curl -s $URL/v3/kv/range`,
    `curl -s $URL/nope`,
    `curl -s $URL/v3/kv/range -X POST -H 'Grpc-Timeout: bogus' -d '{"key": "Zm9v"}'`,
    `curl -s $URL/v3/kv/range -X POST -H 'Grpc-Timeout: 5S' -H 'Grpc-Metadata-Hasleader: true' -d '{"key": "Zm9v"}'`,
    `curl -s -L $URL/v3/kv/range -X POST -d 'not json'`,
  ].map((command) => `${command} -w '\\n%{http_code}'`);

  it(`answers every example as etcd ${ETCD_VERSION}'s own gateway does`, async () => {
    const run = async (base: string) => {
      const start = Number(((await f.direct.unary("KV", "Range", { key: Buffer.from("x") })) as any).header.revision);
      const out: unknown[] = [];
      for (const command of script) {
        const text = await curl(base, command);
        const at = text.lastIndexOf("\n");
        const [body, status] = [text.slice(0, at), Number(text.slice(at + 1))];
        let parsed: unknown = body;
        try {
          parsed = normalize(JSON.parse(body), start);
        } catch {
          // a plain-text answer (404 page not found, ...) is compared as text
        }
        out.push({ command, status, body: parsed });
      }
      await f.direct.unary("KV", "DeleteRange", { key: Buffer.from("foo") });
      return out;
    };
    const direct = await run(f.etcd.members[0]!.clientUrl);
    const proxied = await run(`http://${f.proxy.address}`);
    // etcd's own parser words a bad body its way; the status and code match.
    const [directBad, proxiedBad] = [direct.pop(), proxied.pop()] as Array<{ status: number; body: { code: number } }>;
    assert.equal(proxiedBad!.status, directBad!.status);
    assert.equal(proxiedBad!.body.code, directBad!.body.code);
    assert.deepEqual(proxied, direct);
  });

  it("a Grpc-Timeout ends a watch stream with etcd's error line", async () => {
    const watch = `curl -s -m 5 $URL/v3/watch -X POST -H 'Grpc-Timeout: 1S' -d '{"create_request": {"key":"dGltZWQ="}}'`;
    const lines = async (base: string) => {
      const started = Date.now();
      const out = (await curl(base, watch)).trim().split("\n");
      return { took: Date.now() - started, lines: out.map((l) => normalize(JSON.parse(l), 0)) };
    };
    const [direct, proxied] = [await lines(f.etcd.members[0]!.clientUrl), await lines(`http://${f.proxy.address}`)];
    assert.equal(direct.lines.length, 2, "Created, then the deadline's error line");
    assert.deepEqual(proxied.lines[0], direct.lines[0]);
    // etcd's own words for its expired deadline vary from run to run: 3.4
    // says DeadlineExceeded (4) or, when its own context ends first,
    // Unknown (2); 3.5 says 4 with "context deadline exceeded" or with
    // "stream terminated by RST_STREAM with error code: CANCEL". The proxy
    // says 4 and "context deadline exceeded", which both can say.
    type ErrorLine = { error: { code?: number; grpc_code?: number; message: string } };
    const [directError, proxiedError] = [direct.lines[1], proxied.lines[1]] as ErrorLine[];
    assert.match(directError!.error.message, /^(context deadline exceeded|stream terminated by RST_STREAM .*)$/);
    assert.equal(proxiedError!.error.message, "context deadline exceeded");
    assert.equal(proxiedError!.error.code ?? proxiedError!.error.grpc_code, 4);
    if (ETCD_LINE === "3.5") assert.deepEqual(Object.keys(proxiedError!.error), Object.keys(directError!.error));
    assert.ok(proxied.took >= 900 && proxied.took < 4000, `ended after ${proxied.took} ms`);
  });

  it('streams a watch as {"result": ...} lines', async () => {
    const base = `http://${f.proxy.address}`;
    const lines: string[] = [];
    const watch = execFile("curl", [
      "-sN",
      `${base}/v3/watch`,
      "-X",
      "POST",
      "-d",
      '{"create_request": {"key":"d2F0Y2hlZA=="}}',
    ]);
    watch.stdout!.on("data", (d: string) => lines.push(...d.split("\n").filter((l) => l !== "")));
    const until = Date.now() + 5000;
    while (lines.length < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await curl(base, `curl -s $URL/v3/kv/put -X POST -d '{"key": "d2F0Y2hlZA==", "value": "dg=="}'`);
    while (lines.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    watch.kill();
    const [created, event] = lines.map((l) => JSON.parse(l) as { result: any });
    assert.equal(created!.result.created, true);
    assert.equal(event!.result.events[0].kv.key, "d2F0Y2hlZA==");
  });
});

describe("etcd's JSON gateway under auth", () => {
  const f = useProxy(1, {
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["put", "secret", "s"]);
      await ctl(via, ["auth", "enable"]);
    },
  });

  it("the Authorization header carries the token from /v3/auth/authenticate", async () => {
    const base = `http://${f.proxy.address}`;
    const auth = JSON.parse(
      await curl(base, `curl -s $URL/v3/auth/authenticate -X POST -d '{"name": "root", "password": "rootpw"}'`),
    );
    assert.equal(typeof auth.token, "string");
    const read = JSON.parse(
      await curl(base, `curl -s $URL/v3/kv/range -X POST -H "Authorization: ${auth.token}" -d '{"key": "c2VjcmV0"}'`),
    );
    assert.equal(read.kvs[0].value, "cw==");
    const anonymous = JSON.parse(await curl(base, `curl -s $URL/v3/kv/range -X POST -d '{"key": "c2VjcmV0"}'`));
    const direct = JSON.parse(
      await curl(f.etcd.members[0]!.clientUrl, `curl -s $URL/v3/kv/range -X POST -d '{"key": "c2VjcmV0"}'`),
    );
    assert.deepEqual(anonymous, direct, "without a token: etcd's refusal");
  });

  it("a stream that etcd ends with an error ends with etcd's error line", async () => {
    const base = `http://${f.proxy.address}`;
    const auth = JSON.parse(
      await curl(base, `curl -s $URL/v3/auth/authenticate -X POST -d '{"name": "root", "password": "rootpw"}'`),
    );
    const lease = JSON.parse(
      await curl(base, `curl -s $URL/v3/lease/grant -X POST -H "Authorization: ${auth.token}" -d '{"TTL": 60}'`),
    );
    // Anonymous renewals: etcd 3.5.28 and later refuse them (the stream ends
    // with an error line), earlier etcd renews (the stream stays open).
    const renew = `curl -s -m 2 $URL/v3/lease/keepalive -X POST -d '{"ID": "${lease.ID}"}'`;
    const firstLine = async (url: string) => {
      const out = JSON.parse((await curl(url, renew)).split("\n")[0]!);
      return normalize(out, 0);
    };
    assert.deepEqual(await firstLine(base), await firstLine(f.etcd.members[0]!.clientUrl));
  });
});
