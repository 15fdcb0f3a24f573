import { ConnectError } from "@connectrpc/connect";
import { frame } from "../grpc/wire.js";
import { ErrorCode } from "../http2/frames.js";
import { H2Client } from "../upstream/h2-client.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import { isAuthRejection } from "../upstream/errors.js";
import type { HealthReport } from "./cluster-health.js";

/** RangeRequest{key: "a"} and WatchRequest{create_request{key: "a"}}, as etcd's check uses. */
const RANGE_A = frame(Uint8Array.of(0x0a, 0x01, 0x61));
const WATCH_A = frame(Uint8Array.of(0x0a, 0x03, 0x0a, 0x01, 0x61));

/**
 * etcd's /proxy/health: the proxy checks itself through its own listener, the
 * way a client would. A read of "a" must succeed (or be refused by auth), and
 * a watch must be created within `watchTimeoutMs` (etcd's 3 s).
 */
export async function checkProxyHealth(
  selfUrl: string,
  identity: ProxyIdentity,
  timeoutMs: number,
  watchTimeoutMs: number,
): Promise<HealthReport> {
  // Its own certificate need not be trusted to check itself.
  const client = new H2Client(selfUrl, {
    keepaliveTimeMs: 0,
    keepaliveTimeoutMs: 0,
    keepaliveWithoutStream: false,
    tls: { rejectUnauthorized: false },
  });
  try {
    let metadata: Record<string, string>;
    try {
      metadata = await identity.metadata();
    } catch (e) {
      return { health: false, reason: `AUTH ERROR:${ConnectError.from(e).rawMessage}` };
    }
    try {
      await client.unary("/etcdserverpb.KV/Range", RANGE_A, metadata, AbortSignal.timeout(timeoutMs), 1 << 20);
    } catch (e) {
      const err = ConnectError.from(e);
      if (!isAuthRejection(err)) return { health: false, reason: `GET ERROR:${err.rawMessage}` };
    }
    const created = await new Promise<boolean>((resolve) => {
      const stream = client.open("/etcdserverpb.Watch/Watch", metadata);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        stream.reset(ErrorCode.CANCEL); // the check's watch must not outlive it
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), watchTimeoutMs);
      stream.onBody = () => done(true);
      stream.onClose(() => done(false));
      stream.write(WATCH_A);
    });
    return created ? { health: true, reason: "" } : { health: false, reason: "WATCH TIMEOUT" };
  } finally {
    client.close();
  }
}
