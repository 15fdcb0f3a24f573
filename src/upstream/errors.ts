import { Code, ConnectError } from "@connectrpc/connect";

/** Marks a request that provably never left the proxy. */
const NOT_SENT = "ERR_ECP_NOT_SENT";

/** Node error codes that mean the request never reached etcd. */
const CONNECT_FAILURES = new Set([
  NOT_SENT,
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_SSL_WRONG_VERSION_NUMBER",
]);

function causeChain(err: unknown): Array<{ code?: unknown; syscall?: unknown; message?: unknown }> {
  const chain: Array<{ code?: unknown; syscall?: unknown; message?: unknown }> = [];
  let cur: unknown = err;
  while (cur instanceof Error && !chain.includes(cur) && chain.length < 8) {
    chain.push(cur as never);
    cur = (cur as { cause?: unknown }).cause;
  }
  return chain;
}

/**
 * True when the request provably never reached etcd: the connection could not
 * be opened, or the server refused the HTTP/2 stream before processing it.
 * Only such failures may be retried for calls that change state.
 */
export function neverReachedEtcd(err: unknown): boolean {
  return causeChain(err).some(
    (e) =>
      (typeof e.code === "string" && CONNECT_FAILURES.has(e.code)) ||
      e.syscall === "connect" ||
      (typeof e.message === "string" && e.message.includes("REFUSED_STREAM")),
  );
}

/** An Unavailable error for a request that never reached etcd, so any call may be re-sent. */
export function notSentError(message: string, cause?: Error): ConnectError {
  const marker = Object.assign(new Error(message, { cause }), { code: NOT_SENT });
  return new ConnectError(message, Code.Unavailable, undefined, undefined, marker);
}

/**
 * True when the failure came from the connection to an endpoint rather than
 * from etcd's answer (etcd's own errors arrive as a grpc-status with no cause).
 */
export function isConnectionFailure(err: unknown): boolean {
  // Connect reports every transport problem as a ConnectError; anything else
  // is a bug on our side, not a reason to abandon the endpoint.
  if (!(err instanceof ConnectError)) return false;
  // A stream reset by the connection going down (the member died) reads as
  // "canceled" too; callers tell it from their own cancel by their signal.
  if (neverReachedEtcd(err) || err.rawMessage.startsWith("http/2 stream closed")) return true;
  if (err.code === Code.Canceled || err.code === Code.DeadlineExceeded) return false;
  return err.cause instanceof Error;
}

/**
 * Rebuilds an upstream error so only etcd's code and message travel on.
 * Rethrowing the original would copy etcd's response headers into our
 * trailers (a duplicate content-type, among others).
 */
export function toClientError(err: unknown): ConnectError {
  const ce = ConnectError.from(err);
  // A request over --max-send-bytes (etcd's own request limit by default) is
  // refused before sending; answer it the way etcd would have.
  if (ce.code === Code.ResourceExhausted && /larger than configured writeMaxBytes/.test(ce.rawMessage)) {
    return new ConnectError("etcdserver: request is too large", Code.InvalidArgument);
  }
  // The cause stays for our own failover decisions; Connect never sends it.
  return new ConnectError(ce.rawMessage, ce.code, undefined, undefined, ce.cause);
}

/** etcd answers these when auth is on and the caller has no (valid) identity. */
export function isAuthRejection(err: ConnectError): boolean {
  return (
    err.code === Code.PermissionDenied ||
    err.code === Code.Unauthenticated ||
    /etcdserver: (user name is empty|invalid auth token|permission denied)/.test(err.rawMessage)
  );
}
