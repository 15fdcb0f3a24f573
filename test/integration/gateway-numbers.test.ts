// 64-bit numbers sent as JSON numbers, as etcd3-py and other gateway
// clients send lease IDs: etcd reads them exactly, and so must the proxy,
// through the gateway and through Connect JSON. Each step runs against etcd
// and against the proxy, with a lease of each past 2^53, and the answers are
// compared; refusals must be etcd's own words.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the JSON gateway and Connect JSON are served the same way in both lanes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_VERSION } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";

/** Lease IDs a double cannot hold: each names its neighbour once rounded. */
const DIRECT_LEASE = "7198338028589184775";
const PROXY_LEASE = "7198338028589184777";

interface Answer {
  status: number;
  body: unknown;
}

async function post(base: string, path: string, body: string, contentType?: string): Promise<Answer> {
  const r = await fetch(`${base}${path}`, {
    method: "POST",
    body,
    headers: contentType ? { "content-type": contentType } : {},
  });
  const text = await r.text();
  const lines = text.trim().split("\n");
  const parse = (t: string) => {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return t;
    }
  };
  return { status: r.status, body: lines.length > 1 ? lines.map(parse) : parse(text) };
}

/** Drops what differs between two runs (member IDs, the clock) and names the run's lease and revision. */
function comparable(json: unknown, lease: string, revision: string): unknown {
  if (Array.isArray(json)) return json.map((j) => comparable(j, lease, revision));
  if (json && typeof json === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(json)) {
      if (["cluster_id", "member_id", "raft_term", "revision", "mod_revision", "create_revision"].includes(k)) continue;
      if (k === "TTL") out[k] = Number(v) > 0 ? "positive" : v;
      else out[k] = comparable(v, lease, revision);
    }
    return out;
  }
  if (json === lease) return "<lease>";
  if (json === revision) return "<revision>";
  return json;
}

describe(`64-bit numbers in JSON, against etcd ${ETCD_VERSION}`, () => {
  const f = useProxy(1);
  const b64 = (s: string) => Buffer.from(s).toString("base64");

  /** The same steps, numbers written as numbers; the answers made comparable. */
  const flow = async (base: string, lease: string, key: string) => {
    const answers: Answer[] = [];
    const step = async (path: string, body: string) => {
      const a = await post(base, path, body);
      answers.push(a);
      return a;
    };
    await step("/v3/lease/grant", `{"ID": ${lease}, "TTL": 600}`);
    const put = await step("/v3/kv/put", `{"key": "${b64(key)}", "value": "${b64("v")}", "lease": ${lease}}`);
    const revision = String((put.body as { header: { revision: string } }).header.revision);
    await step("/v3/lease/timetolive", `{"ID": ${lease}, "keys": true}`);
    await step("/v3/kv/lease/timetolive", `{"ID": ${lease}}`);
    await step("/v3/lease/keepalive", `{"ID": ${lease}}`);
    await step("/v3/kv/range", `{"key": "${b64(key)}", "revision": ${revision}}`);
    await step("/v3/kv/range", `{"key": "${b64(key)}", "revision": "${revision}", "limit": 1}`);
    // What etcd refuses, in its words: a fraction, an exponent, out of range, a negative member ID.
    await step("/v3/kv/put", `{"key": "${b64(key)}", "value": "", "lease": 1.5}`);
    await step("/v3/kv/put", `{"key": "${b64(key)}", "value": "", "lease": 99999999999999999999}`);
    await step("/v3/kv/put", `{"key": "${b64(key)}", "value": "", "lease": "abc"}`);
    await step("/v3/kv/range", `{"key": "${b64(key)}", "limit": 1e3}`);
    await step("/v3/cluster/member/remove", `{"ID": -1}`);
    await step("/v3/lease/revoke", `{"ID": ${lease}}`);
    await step("/v3/kv/lease/timetolive", `{"ID": ${lease}}`);
    return answers.map((a) => ({ status: a.status, body: comparable(a.body, lease, revision) }));
  };

  it("a lease ID and a revision written as numbers reach etcd exactly, and refusals are etcd's", async () => {
    const direct = await flow(`http://${f.etcd.members[0]!.endpoint}`, DIRECT_LEASE, "numbers/direct");
    const proxied = await flow(`http://${f.proxy.address}`, PROXY_LEASE, "numbers/proxy");
    // protobuf-go writes "proto:" then a space or a no-break space, chosen per binary so that nobody
    // matches its errors' text (etcd 3.5.30 from Debian has the no-break space); the proxy writes a space.
    const keyless = (answers: typeof direct) =>
      JSON.parse(
        JSON.stringify(answers)
          .replaceAll(b64("numbers/direct"), "KEY")
          .replaceAll(b64("numbers/proxy"), "KEY")
          .replaceAll("proto:\u00a0", "proto: "),
      );
    assert.deepEqual(keyless(proxied), keyless(direct));
    // And what the flow proved on the way: the lease was found, with the key the put attached to it.
    const timeToLive = proxied[2]!.body as { ID: string; TTL: string; keys: string[] };
    assert.equal(proxied[1]!.status, 200);
    assert.equal(timeToLive.ID, "<lease>");
    assert.equal(timeToLive.TTL, "positive");
    assert.deepEqual(timeToLive.keys, [b64("numbers/proxy")]);
  });

  it("Connect JSON, unary, GET and streaming, reads a lease ID written as a number exactly", async () => {
    const lease = "7198338028589184779";
    await post(`http://${f.proxy.address}`, "/v3/lease/grant", `{"ID": "${lease}", "TTL": 600}`);
    const unary = await post(
      `http://${f.proxy.address}`,
      "/etcdserverpb.Lease/LeaseTimeToLive",
      `{"ID": ${lease}}`,
      "application/json",
    );
    assert.equal(unary.status, 200, JSON.stringify(unary.body));
    assert.equal((unary.body as { ID: string }).ID, lease);
    assert.ok(Number((unary.body as { TTL: string }).TTL) > 0, "the lease was found, not its rounded neighbour");

    const query = encodeURIComponent(`{"ID":${lease}}`);
    const get = await fetch(
      `http://${f.proxy.address}/etcdserverpb.Lease/LeaseTimeToLive?connect=v1&encoding=json&message=${query}`,
    );
    const got = (await get.json()) as { ID: string; TTL: string };
    assert.equal(got.ID, lease);
    assert.ok(Number(got.TTL) > 0);

    // gRPC-Web with a JSON body: one enveloped message.
    const payload = Buffer.from(`{"ID":${lease}}`);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(payload.length, 1);
    const web = await fetch(`http://${f.proxy.address}/etcdserverpb.Lease/LeaseTimeToLive`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+json" },
      body: Buffer.concat([prefix, payload]),
    });
    const bytes = Buffer.from(await web.arrayBuffer());
    const message = JSON.parse(bytes.subarray(5, 5 + bytes.readUInt32BE(1)).toString()) as { ID: string; TTL: string };
    assert.equal(message.ID, lease);
    assert.ok(Number(message.TTL) > 0);
  });
});
