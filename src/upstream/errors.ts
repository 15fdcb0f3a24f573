import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Why an upstream call ended without a status from etcd, as the proxy's own
 * code, carried as the ConnectError's cause: failover decisions read the
 * code, never a message.
 * - "not-sent": the request provably never reached etcd (the connection
 *   never came up, or etcd refused the stream before processing it), so any
 *   call may be re-sent;
 * - "connection-lost": the connection went down under the call, which etcd
 *   may have processed.
 */
export type UpstreamFailureKind = "not-sent" | "connection-lost";

class UpstreamFailure extends Error {
  constructor(
    message: string,
    readonly kind: UpstreamFailureKind,
    cause?: Error,
  ) {
    super(message, { cause });
  }
}

/** An Unavailable error for a call that ended without etcd's status; `told` is what the client reads. */
export function upstreamFailure(kind: UpstreamFailureKind, told: string, cause?: Error): ConnectError {
  return new ConnectError(told, Code.Unavailable, undefined, undefined, new UpstreamFailure(told, kind, cause));
}

function failureKind(err: unknown): UpstreamFailureKind | undefined {
  const cause = err instanceof ConnectError ? err.cause : undefined;
  return cause instanceof UpstreamFailure ? cause.kind : undefined;
}

/**
 * True when the request provably never reached etcd. Only such failures may
 * be retried for calls that change state.
 */
export function neverReachedEtcd(err: unknown): boolean {
  return failureKind(err) === "not-sent";
}

/**
 * True when the failure came from the connection to an endpoint rather than
 * from etcd's answer (etcd's own errors arrive as a grpc-status).
 */
export function isConnectionFailure(err: unknown): boolean {
  return failureKind(err) !== undefined;
}

/**
 * Rebuilds an upstream error so only etcd's code and message travel on.
 * Rethrowing the original would copy etcd's response headers into our
 * trailers (a duplicate content-type, among others).
 */
export function toClientError(err: unknown): ConnectError {
  const ce = ConnectError.from(err);
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
