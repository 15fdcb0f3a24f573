// --namespace is invisible from inside: any sequence of KV calls through a
// NamespacedUpstream over one fake etcd answers exactly as the same calls
// straight to another fake etcd, and in the first every key lives under the
// prefix, which nothing inside can read or write past.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import type { CallContext } from "../../src/call-context.js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  KV,
  type TxnRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { NamespacedUpstream } from "../../src/namespace/namespaced-upstream.js";
import { KeyPrefix } from "../../src/namespace/prefix.js";
import type { Upstream } from "../../src/upstream/upstream.js";
import { FakeEtcd } from "./fake-etcd.js";

const ctx: CallContext = { forwardHeaders: {}, deadline: undefined, signal: new AbortController().signal };
const b = (s: string) => Buffer.from(s, "latin1");
const key = fc.constantFrom("a", "b", "b/1", "b/2", "c", "\xff");
const end = fc.constantFrom("", "b0", "c", "\0", "\xff\xff");

type Call =
  | { kind: "range"; key: string; end: string; limit: number; keysOnly: boolean; countOnly: boolean }
  | { kind: "put"; key: string; value: string; prevKv: boolean }
  | { kind: "delete"; key: string; end: string; prevKv: boolean }
  | { kind: "txn"; key: string; version: number; then: string; otherwise: string };

const call: fc.Arbitrary<Call> = fc.oneof(
  fc.record({
    kind: fc.constant("range" as const),
    key,
    end,
    limit: fc.nat(3),
    keysOnly: fc.boolean(),
    countOnly: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("put" as const), key, value: fc.string({ maxLength: 3 }), prevKv: fc.boolean() }),
  fc.record({ kind: fc.constant("delete" as const), key, end, prevKv: fc.boolean() }),
  fc.record({ kind: fc.constant("txn" as const), key, version: fc.nat(3), then: key, otherwise: key }),
);

async function send(upstream: Upstream, c: Call): Promise<string> {
  switch (c.kind) {
    case "range":
      return toJsonString(
        KV.method.range.output,
        await upstream.unary(
          KV.method.range,
          { key: b(c.key), rangeEnd: b(c.end), limit: BigInt(c.limit), keysOnly: c.keysOnly, countOnly: c.countOnly },
          ctx,
        ),
      );
    case "put":
      return toJsonString(
        KV.method.put.output,
        await upstream.unary(KV.method.put, { key: b(c.key), value: b(c.value), prevKv: c.prevKv }, ctx),
      );
    case "delete":
      return toJsonString(
        KV.method.deleteRange.output,
        await upstream.unary(KV.method.deleteRange, { key: b(c.key), rangeEnd: b(c.end), prevKv: c.prevKv }, ctx),
      );
    case "txn": {
      const request: MessageInitShape<typeof TxnRequestSchema> = {
        compare: [
          {
            key: b(c.key),
            target: Compare_CompareTarget.VERSION,
            result: Compare_CompareResult.EQUAL,
            targetUnion: { case: "version", value: BigInt(c.version) },
          },
        ],
        success: [
          { request: { case: "requestPut", value: { key: b(c.then), value: b("t"), prevKv: true } } },
          { request: { case: "requestRange", value: { key: b(c.key), rangeEnd: b("\0") } } },
        ],
        failure: [
          { request: { case: "requestDeleteRange", value: { key: b(c.otherwise), prevKv: true } } },
          {
            request: {
              case: "requestTxn",
              value: { success: [{ request: { case: "requestRange", value: { key: b(c.then) } } }] },
            },
          },
        ],
      };
      return toJsonString(KV.method.txn.output, await upstream.unary(KV.method.txn, request, ctx));
    }
  }
}

describe("the namespaced upstream", () => {
  it("answers every KV call as etcd without a namespace would, and keeps every key under the prefix", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 25 }), async (calls) => {
        const plain = new FakeEtcd();
        const behind = new FakeEtcd();
        const namespaced = new NamespacedUpstream(behind, new KeyPrefix(b("ns/")));
        // Something outside the namespace, which nothing inside may see or touch.
        await behind.unary(KV.method.put, { key: b("outside"), value: b("x") }, ctx);
        await plain.unary(KV.method.put, { key: b("\x01unrelated"), value: b("x") }, ctx); // keeps the revisions in step
        await plain.unary(KV.method.deleteRange, { key: b("\x01unrelated") }, ctx);
        behind.revision = plain.revision;
        for (const c of calls) {
          assert.equal(await send(namespaced, c), await send(plain, c), JSON.stringify(c));
        }
        const inside = behind.dump().filter(([k]) => k !== "outside");
        assert.ok(
          inside.every(([k]) => k.startsWith("ns/")),
          JSON.stringify(behind.dump()),
        );
        assert.deepEqual(
          inside.map(([k, v]) => [k.slice(3), v]),
          plain.dump(),
        );
        assert.deepEqual(
          behind.dump().find(([k]) => k === "outside"),
          ["outside", "x"],
        );
      }),
      { numRuns: 200 },
    );
  });
});
