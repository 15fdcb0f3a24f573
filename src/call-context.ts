import type { AnswerGate } from "./util/answer-gate.js";

export type { AnswerGate };

/**
 * What a service needs to know about the call it serves, independent of the
 * transport (Connect on Fastify, or the native gRPC lane).
 */
export interface CallContext {
  /**
   * Client metadata that must reach etcd unchanged: the auth `token`,
   * `hasleader` (clientv3.WithRequireLeader) and `client-api-version`.
   */
  readonly forwardHeaders: Readonly<Record<string, string>>;
  /** Absolute deadline (ms since the epoch), when the client set one. */
  readonly deadline: number | undefined;
  /** Aborts when the client cancels, disconnects or runs out of time. */
  readonly signal: AbortSignal;
  /** Paces unary answers to what the client reads, where its transport knows that. */
  readonly answers?: AnswerGate;
}

/** Metadata keys forwarded to etcd, lower-case as HTTP/2 sends them. */
const FORWARDED_METADATA = ["token", "hasleader", "client-api-version"] as const;

/** The metadata to forward, read from a client's request headers by `get`. */
function forwardedMetadata(get: (key: string) => string | null | undefined): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of FORWARDED_METADATA) {
    const value = get(key);
    if (typeof value === "string") picked[key] = value;
  }
  return picked;
}

/**
 * How every lane starts a call: the metadata etcd must see, read from the
 * client's headers by `header` (each lane knows its own wire format), and
 * the deadline `timeoutMs` from now. `signal` may be a getter, for lanes
 * that make the signal only if a handler asks for it.
 */
export function startCall(
  header: (key: string) => string | null | undefined,
  timeoutMs: number | undefined,
  signal: AbortSignal | (() => AbortSignal),
  answers?: AnswerGate,
): CallContext {
  const forwardHeaders = forwardedMetadata(header);
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  if (typeof signal !== "function") return { forwardHeaders, deadline, signal, answers };
  return {
    forwardHeaders,
    deadline,
    answers,
    get signal() {
      return signal();
    },
  };
}

/**
 * Who a caller is to etcd: its auth token (or none), and whether it requires
 * a leader. Calls the proxy shares between clients (watch streams, lease
 * keep-alive streams) are shared only within one identity, so etcd checks
 * every client's rights, and nobody rides another's token.
 */
export interface CallerIdentity {
  /** A map key that tells identities apart. */
  readonly key: string;
  /** The metadata the shared upstream call carries. */
  readonly forwardHeaders: Readonly<Record<string, string>>;
  readonly requireLeader: boolean;
}

export function callerIdentity(headers: Readonly<Record<string, string>>): CallerIdentity {
  const token = headers["token"];
  const requireLeader = headers["hasleader"] === "true";
  const forwardHeaders: Record<string, string> = {};
  if (token !== undefined) forwardHeaders["token"] = token;
  if (requireLeader) forwardHeaders["hasleader"] = "true";
  return { key: `${requireLeader ? "L" : "-"}${token ?? ""}`, forwardHeaders, requireLeader };
}

/** Builds a context for calls the proxy makes on its own behalf (health checks). */
export function internalContext(timeoutMs: number, signal?: AbortSignal): CallContext {
  const timeout = AbortSignal.timeout(timeoutMs);
  return {
    forwardHeaders: {},
    deadline: Date.now() + timeoutMs,
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  };
}
