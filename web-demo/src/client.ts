// The dashboard's only backend is the proxy: Connect (binary) from the
// browser, to the same port etcdctl uses.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { Auth, Cluster, KV, Lease, Maintenance } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { LeaseService, ProxyService, WatchService } from "../../src/gen/etcdproxy/v1/proxy_pb.js";

/** etcd's "every key under this prefix" range end; the proxy's own rule, shared. */
export { prefixEnd } from "../../src/namespace/prefix.js";

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
