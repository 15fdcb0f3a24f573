// Error fidelity: every error reaches the client with etcd's own gRPC code
// and message (clientv3 and etcdctl match errors by their text). Each case runs
// directly against etcd and through the proxy with an independent client.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useProxy } from "../helpers/fixture.js";
import { outcome } from "../helpers/grpc-client.js";

let compactedRev: number;
const f = useProxy(1, {
  setup: async ({ direct }) => {
    await direct.unary("KV", "Put", { key: Buffer.from("e/k"), value: Buffer.from("1") });
    const put = await direct.unary("KV", "Put", { key: Buffer.from("e/k"), value: Buffer.from("2") });
    compactedRev = Number((put.header as { revision: string }).revision);
    await direct.unary("KV", "Compact", { revision: compactedRev });
    await direct.unary("Lease", "LeaseGrant", { ID: 4242, TTL: 600 });
    await direct.unary("Auth", "UserAdd", { name: "dup", password: "pw" });
  },
});

interface Case {
  name: string;
  service: string;
  method: string;
  request: () => Record<string, unknown>;
  code: grpc.status;
  message: string;
}

const cases: Case[] = [
  {
    name: "Range with an empty key",
    service: "KV",
    method: "Range",
    request: () => ({ key: Buffer.alloc(0) }),
    code: grpc.status.INVALID_ARGUMENT,
    message: "etcdserver: key is not provided",
  },
  {
    name: "Range at a future revision",
    service: "KV",
    method: "Range",
    request: () => ({ key: Buffer.from("e/k"), revision: 1_000_000 }),
    code: grpc.status.OUT_OF_RANGE,
    message: "etcdserver: mvcc: required revision is a future revision",
  },
  {
    name: "Range at a compacted revision",
    service: "KV",
    method: "Range",
    request: () => ({ key: Buffer.from("e/k"), revision: compactedRev - 1 }),
    code: grpc.status.OUT_OF_RANGE,
    message: "etcdserver: mvcc: required revision has been compacted",
  },
  {
    name: "Put bound to a missing lease",
    service: "KV",
    method: "Put",
    request: () => ({ key: Buffer.from("e/l"), value: Buffer.from("v"), lease: 999_999 }),
    code: grpc.status.NOT_FOUND,
    message: "etcdserver: requested lease not found",
  },
  {
    name: "Txn that writes one key twice",
    service: "KV",
    method: "Txn",
    request: () => ({
      success: [
        { request_put: { key: Buffer.from("e/d"), value: Buffer.from("1") } },
        { request_put: { key: Buffer.from("e/d"), value: Buffer.from("2") } },
      ],
    }),
    code: grpc.status.INVALID_ARGUMENT,
    message: "etcdserver: duplicate key given in txn request",
  },
  {
    name: "Txn with an empty RequestOp (crashes etcd's Go proxy)",
    service: "KV",
    method: "Txn",
    request: () => ({ success: [{}] }),
    code: grpc.status.INVALID_ARGUMENT,
    message: "etcdserver: key not found",
  },
  {
    name: "Txn with an empty RequestOp nested in a Txn",
    service: "KV",
    method: "Txn",
    request: () => ({ success: [{ request_txn: { success: [{}] } }] }),
    code: grpc.status.INVALID_ARGUMENT,
    message: "etcdserver: key not found",
  },
  {
    name: "Compact at a future revision",
    service: "KV",
    method: "Compact",
    request: () => ({ revision: 1_000_000 }),
    code: grpc.status.OUT_OF_RANGE,
    message: "etcdserver: mvcc: required revision is a future revision",
  },
  {
    name: "a request larger than etcd accepts",
    service: "KV",
    method: "Put",
    request: () => ({ key: Buffer.from("e/big"), value: Buffer.alloc(1_700_000, 120) }),
    code: grpc.status.INVALID_ARGUMENT,
    message: "etcdserver: request is too large",
  },
  {
    name: "LeaseRevoke of a missing lease",
    service: "Lease",
    method: "LeaseRevoke",
    request: () => ({ ID: 123_456 }),
    code: grpc.status.NOT_FOUND,
    message: "etcdserver: requested lease not found",
  },
  {
    name: "LeaseGrant of an ID in use",
    service: "Lease",
    method: "LeaseGrant",
    request: () => ({ ID: 4242, TTL: 60 }),
    code: grpc.status.FAILED_PRECONDITION,
    message: "etcdserver: lease already exists",
  },
  {
    name: "UserAdd of an existing user",
    service: "Auth",
    method: "UserAdd",
    request: () => ({ name: "dup", password: "pw" }),
    code: grpc.status.FAILED_PRECONDITION,
    message: "etcdserver: user name already exists",
  },
  {
    name: "Authenticate while auth is disabled",
    service: "Auth",
    method: "Authenticate",
    request: () => ({ name: "dup", password: "pw" }),
    code: grpc.status.FAILED_PRECONDITION,
    message: "etcdserver: authentication is not enabled",
  },
  {
    name: "MemberRemove of an unknown member",
    service: "Cluster",
    method: "MemberRemove",
    request: () => ({ ID: 77 }),
    code: grpc.status.NOT_FOUND,
    message: "etcdserver: member not found",
  },
  {
    name: "Unlock of a key the caller does not hold (no error: etcd deletes nothing)",
    service: "v3lockpb.Lock",
    method: "Unlock",
    request: () => ({ key: Buffer.from("nobody/holds/this") }),
    code: grpc.status.OK,
    message: "",
  },
];

describe("errors keep etcd's code and message", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const expected = { code: c.code, details: c.message };
      assert.deepEqual(await outcome(f.direct.unary(c.service, c.method, c.request())), expected, "direct etcd");
      assert.deepEqual(await outcome(f.client.unary(c.service, c.method, c.request())), expected, "through the proxy");
    });
  }

  it("a deadline the call cannot meet ends it with DEADLINE_EXCEEDED", async () => {
    // Campaign blocks while another candidate leads, so only the deadline can end it.
    const lease = await f.direct.unary("Lease", "LeaseGrant", { TTL: 60 });
    const lease2 = await f.direct.unary("Lease", "LeaseGrant", { TTL: 60 });
    await f.direct.unary("v3electionpb.Election", "Campaign", {
      name: Buffer.from("e/el"),
      lease: lease.ID,
      value: Buffer.from("a"),
    });
    const started = Date.now();
    const r = await outcome(
      f.client.unary(
        "v3electionpb.Election",
        "Campaign",
        { name: Buffer.from("e/el"), lease: lease2.ID, value: Buffer.from("b") },
        undefined,
        500,
      ),
    );
    assert.equal(r.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 5000, "the deadline reached the upstream call");
  });
});
