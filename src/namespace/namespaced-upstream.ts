import {
  fromBinary,
  toBinary,
  type DescMethod,
  type DescMethodBiDiStreaming,
  type DescMethodServerStreaming,
  type DescMethodUnary,
} from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import {
  KV,
  Lease,
  Watch,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { Election, type LeaderKey } from "../gen/etcd/api/v3electionpb/v3election_pb.js";
import { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { wholeFrame, type RequestFrame } from "../grpc/request-frame.js";
import { frame, messageOf } from "../grpc/wire.js";
import { UpstreamDecorator, type Upstream } from "../upstream/upstream.js";
import { wholeAnswer, type Answer } from "../upstream/answer.js";
import { mapAsync } from "../util/map-async.js";
import type { KeyPrefix } from "./prefix.js";

/** How one method's messages cross the namespace boundary. */
interface Translation {
  /** Client view to etcd's. */
  request(message: any): any;
  /** etcd's view to the client's. */
  response(message: any): any;
}

/**
 * --namespace: the upstream as seen from inside the namespace. Everything
 * above it (services, cache, watch hub) works with the client's keys;
 * requests get the prefix on their way to etcd and answers lose it on the
 * way back. KV, Watch, Lease's TimeToLive keys, Election and Lock are
 * translated (etcd's proxy leaves Election and Lock outside); Cluster,
 * Maintenance, Auth and Compact are global, as in etcd.
 */
export class NamespacedUpstream extends UpstreamDecorator {
  private readonly translations: Map<string, Translation>;

  constructor(inner: Upstream, prefix: KeyPrefix) {
    super(inner);
    this.translations = translationsFor(prefix);
  }

  override async unaryBytes(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): Promise<Answer> {
    const t = this.translationOf(method);
    if (!t) return this.inner.unaryBytes(method, requestFrame, ctx, safeToRepeat);
    const answer = await wholeAnswer(
      await this.inner.unaryBytes(method, translated(method, t, wholeFrame(requestFrame)), ctx, safeToRepeat),
    );
    return Buffer.from(toBinary(method.output, t.response(fromBinary(method.output, answer))));
  }

  override serverStreamBytes(
    method: DescMethodServerStreaming,
    requestFrame: Buffer,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): AsyncIterable<Buffer> {
    const t = this.translationOf(method);
    if (!t) return this.inner.serverStreamBytes(method, requestFrame, ctx, safeToRepeat);
    const answers = this.inner.serverStreamBytes(method, translated(method, t, requestFrame), ctx, safeToRepeat);
    return mapAsync(answers, (answer) =>
      Buffer.from(toBinary(method.output, t.response(fromBinary(method.output, answer)))),
    );
  }

  override bidiStreamBytes(
    method: DescMethodBiDiStreaming,
    requestFrames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): AsyncIterable<Buffer> {
    const t = this.translationOf(method);
    if (!t) return this.inner.bidiStreamBytes(method, requestFrames, ctx);
    const requests = mapAsync(requestFrames, (requestFrame) => translated(method, t, requestFrame));
    return mapAsync(this.inner.bidiStreamBytes(method, requests, ctx), (answer) =>
      Buffer.from(toBinary(method.output, t.response(fromBinary(method.output, answer)))),
    );
  }

  private translationOf(method: DescMethod): Translation | undefined {
    return this.translations.get(`${method.parent.typeName}/${method.name}`);
  }
}

/** A client's request frame as etcd must see it. */
function translated(method: DescMethod, t: Translation, requestFrame: Uint8Array): Buffer {
  return frame(toBinary(method.input, t.request(decodeRequest(method, messageOf(requestFrame)))));
}

/** One translation per KV message, used alone and inside Txns alike. */
function kvTranslations(p: KeyPrefix) {
  const kv = (m: KeyValue | undefined): KeyValue | undefined => m && { ...m, key: p.strip(m.key) };
  const kvs = (ms: KeyValue[]) => ms.map((m) => kv(m)!);
  const ranged = <R extends { key: Uint8Array; rangeEnd: Uint8Array }>(r: R): R => ({
    ...r,
    key: p.key(r.key),
    rangeEnd: p.rangeEnd(r.rangeEnd),
  });
  const keyed = <R extends { key: Uint8Array }>(r: R): R => ({ ...r, key: p.key(r.key) });
  const rangeResponse = <R extends { kvs: KeyValue[] }>(r: R): R => ({ ...r, kvs: kvs(r.kvs) });
  const putResponse = <R extends { prevKv?: KeyValue }>(r: R): R => ({ ...r, prevKv: kv(r.prevKv) });
  const deleteResponse = <R extends { prevKvs: KeyValue[] }>(r: R): R => ({ ...r, prevKvs: kvs(r.prevKvs) });

  const op = (o: RequestOp): RequestOp => {
    const r = o.request;
    switch (r.case) {
      case "requestRange":
        return { ...o, request: { case: r.case, value: ranged(r.value) } };
      case "requestPut":
        return { ...o, request: { case: r.case, value: keyed(r.value) } };
      case "requestDeleteRange":
        return { ...o, request: { case: r.case, value: ranged(r.value) } };
      case "requestTxn":
        return { ...o, request: { case: r.case, value: txnRequest(r.value) } };
      default:
        return o; // an empty op: etcd refuses it
    }
  };
  const txnRequest = (t: TxnRequest): TxnRequest => ({
    ...t,
    compare: t.compare.map((c) => ({ ...c, key: p.add(c.key), rangeEnd: p.rangeEnd(c.rangeEnd) })),
    success: t.success.map(op),
    failure: t.failure.map(op),
  });
  const opResponse = (o: ResponseOp): ResponseOp => {
    const r = o.response;
    switch (r.case) {
      case "responseRange":
        return { ...o, response: { case: r.case, value: rangeResponse(r.value) } };
      case "responsePut":
        return { ...o, response: { case: r.case, value: putResponse(r.value) } };
      case "responseDeleteRange":
        return { ...o, response: { case: r.case, value: deleteResponse(r.value) } };
      case "responseTxn":
        return { ...o, response: { case: r.case, value: txnResponse(r.value) } };
      default:
        return o;
    }
  };
  const txnResponse = (t: TxnResponse): TxnResponse => ({ ...t, responses: t.responses.map(opResponse) });
  return { kv, ranged, keyed, rangeResponse, putResponse, deleteResponse, txnRequest, txnResponse };
}

function translationsFor(p: KeyPrefix): Map<string, Translation> {
  const { kv, ranged, keyed, rangeResponse, putResponse, deleteResponse, txnRequest, txnResponse } = kvTranslations(p);
  const leader = (l: LeaderKey | undefined, change: (k: Uint8Array) => Uint8Array): LeaderKey | undefined =>
    l && { ...l, name: change(l.name), key: change(l.key) };
  const add = (k: Uint8Array) => p.add(k);
  const strip = (k: Uint8Array) => p.strip(k);

  const entries: Array<[DescMethod, Translation]> = [
    [KV.method.range, { request: ranged, response: rangeResponse }],
    [KV.method.put, { request: keyed, response: putResponse }],
    [KV.method.deleteRange, { request: ranged, response: deleteResponse }],
    [KV.method.txn, { request: txnRequest, response: txnResponse }],
    [
      Watch.method.watch,
      {
        request: (r) =>
          r.requestUnion?.case === "createRequest"
            ? {
                ...r,
                requestUnion: {
                  case: "createRequest",
                  value: {
                    ...r.requestUnion.value,
                    key: p.add(r.requestUnion.value.key),
                    rangeEnd: p.rangeEnd(r.requestUnion.value.rangeEnd),
                  },
                },
              }
            : r,
        response: (r) =>
          r.events.length === 0
            ? r
            : { ...r, events: r.events.map((e: any) => ({ ...e, kv: kv(e.kv), prevKv: kv(e.prevKv) })) },
      },
    ],
    [
      Lease.method.leaseTimeToLive,
      {
        request: (r) => r,
        // Keys outside the namespace are not the client's to see.
        response: (r) => ({ ...r, keys: r.keys.filter((k: Uint8Array) => p.owns(k)).map(strip) }),
      },
    ],
    [
      Election.method.campaign,
      { request: (r) => ({ ...r, name: add(r.name) }), response: (r) => ({ ...r, leader: leader(r.leader, strip) }) },
    ],
    [Election.method.proclaim, { request: (r) => ({ ...r, leader: leader(r.leader, add) }), response: (r) => r }],
    [
      Election.method.leader,
      { request: (r) => ({ ...r, name: add(r.name) }), response: (r) => ({ ...r, kv: kv(r.kv) }) },
    ],
    [
      Election.method.observe,
      { request: (r) => ({ ...r, name: add(r.name) }), response: (r) => ({ ...r, kv: kv(r.kv) }) },
    ],
    [Election.method.resign, { request: (r) => ({ ...r, leader: leader(r.leader, add) }), response: (r) => r }],
    [
      Lock.method.lock,
      { request: (r) => ({ ...r, name: add(r.name) }), response: (r) => ({ ...r, key: strip(r.key) }) },
    ],
    [Lock.method.unlock, { request: (r) => ({ ...r, key: add(r.key) }), response: (r) => r }],
  ];
  return new Map(entries.map(([m, t]) => [`${m.parent.typeName}/${m.name}`, t]));
}
