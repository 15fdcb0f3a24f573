import { ConnectError } from "@connectrpc/connect";
import { internalContext, type CallContext } from "../call-context.js";
import { Auth } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { isAuthRejection } from "./errors.js";
import type { Upstream } from "./upstream.js";

/**
 * Who the proxy is when it calls etcd for itself: health checks,
 * registration, the cache's invalidation watch, the registration directory.
 * Client calls always carry the client's own identity, never this one.
 */
export interface ProxyIdentity {
  /** Metadata for the proxy's own calls: its token, or nothing when anonymous. */
  metadata(): Promise<Record<string, string>>;
  /** A context for one of the proxy's own unary calls. */
  context(timeoutMs: number, signal?: AbortSignal): Promise<CallContext>;
  /** Call with a failure: if etcd refused the token, the next call logs in again. */
  refused(err: unknown): void;
}

/** No credentials: calls go out anonymously (enough while etcd's auth is off). */
export const ANONYMOUS: ProxyIdentity = {
  metadata: async () => ({}),
  context: async (timeoutMs, signal) => internalContext(timeoutMs, signal),
  refused: () => {},
};

const LOGIN_TIMEOUT_MS = 5000;

/** --user and --password: an etcd user of the proxy's own, logged in when first needed and again when its token is refused. */
export class PasswordIdentity implements ProxyIdentity {
  private token: Promise<string> | undefined;

  constructor(
    private readonly upstream: Upstream,
    private readonly name: string,
    private readonly password: string,
  ) {}

  async metadata(): Promise<Record<string, string>> {
    return { token: await this.login() };
  }

  async context(timeoutMs: number, signal?: AbortSignal): Promise<CallContext> {
    const base = internalContext(timeoutMs, signal);
    return { ...base, forwardHeaders: await this.metadata() };
  }

  refused(err: unknown): void {
    if (isAuthRejection(ConnectError.from(err))) this.token = undefined;
  }

  private login(): Promise<string> {
    this.token ??= this.upstream
      .unary(Auth.method.authenticate, { name: this.name, password: this.password }, internalContext(LOGIN_TIMEOUT_MS))
      .then((r) => r.token)
      .catch((err: unknown) => {
        this.token = undefined;
        throw err;
      });
    return this.token;
  }
}
