// The dashboard's only backend is the proxy: Connect (binary) from the
// browser, to the same port etcdctl uses.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import {
  Auth,
  Cluster,
  KV,
  Lease,
  Maintenance,
  type RangeResponse,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { LeaseService, ProxyService, WatchService } from "../../src/gen/etcdproxy/v1/proxy_pb.js";

/** etcd's "every key under this prefix" range end; the proxy's own rule, shared. */
export { prefixEnd } from "../../src/namespace/prefix.js";
import { prefixEnd } from "../../src/namespace/prefix.js";

let token: string | undefined = sessionStorage.getItem("etcd-token") ?? undefined;

/** etcd reads the caller's auth token from the "token" metadata. */
const withToken: Interceptor = (next) => (req) => {
  if (token) req.header.set("token", token);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [withToken],
});

export const kv = createClient(KV, transport);
export const lease = createClient(Lease, transport);
export const cluster = createClient(Cluster, transport);
export const maintenance = createClient(Maintenance, transport);
export const auth = createClient(Auth, transport);
export const watchService = createClient(WatchService, transport);
export const leaseService = createClient(LeaseService, transport);
export const proxyService = createClient(ProxyService, transport);

export function setToken(t: string | undefined): void {
  token = t;
  if (t) sessionStorage.setItem("etcd-token", t);
  else sessionStorage.removeItem("etcd-token");
}

export const loggedIn = (): boolean => token !== undefined;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const bytes = (s: string): Uint8Array => encoder.encode(s);
export const text = (b: Uint8Array): string => decoder.decode(b);

/**
 * Every key under `prefix` (all keys when empty), a page at a time, all
 * pages read at the first page's revision: one moment of the store.
 */
export async function* pagesUnder(
  prefix: Uint8Array,
  options: { pageSize: number; keysOnly?: boolean; signal?: AbortSignal },
): AsyncGenerator<RangeResponse> {
  const end = prefix.length ? prefixEnd(prefix) : new Uint8Array([0]);
  let from = prefix.length ? prefix : new Uint8Array([0]);
  let revision = 0n;
  for (;;) {
    const r = await kv.range(
      { key: from, rangeEnd: end, limit: BigInt(options.pageSize), revision, keysOnly: options.keysOnly ?? false },
      { signal: options.signal },
    );
    if (revision === 0n) revision = r.header!.revision;
    yield r;
    const last = r.kvs.at(-1)?.key;
    if (!r.more || !last) return;
    from = new Uint8Array([...last, 0]);
  }
}
