import { KV, Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import { sleep } from "../util/abortable-sleep.js";

export interface RegistrationOptions {
  /** --resolver-prefix. */
  prefix: string;
  /** --resolver-ttl, seconds. */
  ttlSeconds: number;
  /** The address to register (--advertise-client-url, or the bound address). */
  advertise: () => string;
  /** The name in the record's metadata (etcd uses the hostname). */
  name: string;
  /** Who the proxy is toward etcd (--user), for clusters with auth on. */
  identity: ProxyIdentity;
  onProblem?: (message: string, err: unknown) => void;
}

const CALL_TIMEOUT_MS = 5000;
/** How long registration and the proxy directory wait before trying etcd again. */
export const RETRY_MS = 1000;

/** The record etcd's proxy writes, byte for byte: Go's naming Update, with JSON-in-JSON metadata. */
export function registrationRecord(addr: string, name: string): string {
  return JSON.stringify({ Op: 0, Addr: addr, Metadata: JSON.stringify({ name }) });
}

/**
 * Registers this proxy under `<prefix>/<advertise>` as etcd's proxy does: a
 * record bound to a lease of --resolver-ttl seconds, renewed every third of
 * it, and written again (at most once a second) whenever the lease is lost.
 * Unlike etcd's, stopping revokes the lease, so the record goes at once.
 */
export class Registration {
  private readonly stopping = new AbortController();
  private lease: bigint | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly upstream: Upstream,
    private readonly keepAlives: KeepAliveCoalescer,
    private readonly options: RegistrationOptions,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Removes the record (revokes its lease); gives up after a few seconds. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    const lease = this.lease;
    this.lease = undefined;
    if (lease === undefined) return;
    try {
      await this.upstream.unary(
        Lease.method.leaseRevoke,
        { ID: lease },
        await this.options.identity.context(CALL_TIMEOUT_MS),
      );
    } catch (err) {
      this.options.onProblem?.("could not remove the proxy's registration; it expires with its lease", err);
    }
  }

  private async run(): Promise<void> {
    const { prefix, ttlSeconds, name } = this.options;
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        const ctx = () => this.options.identity.context(CALL_TIMEOUT_MS, signal);
        const grant = await this.upstream.unary(Lease.method.leaseGrant, { TTL: BigInt(ttlSeconds) }, await ctx());
        this.lease = grant.ID;
        const addr = this.options.advertise();
        await this.upstream.unary(
          KV.method.put,
          {
            key: Buffer.from(`${prefix}/${addr}`),
            value: Buffer.from(registrationRecord(addr, name)),
            lease: grant.ID,
          },
          await ctx(),
        );
        // Renew until the lease is lost (or we stop).
        for (;;) {
          if (!(await sleep((ttlSeconds * 1000) / 3, signal))) return;
          const answer = await this.keepAlives.renewOnce(grant.ID, await this.options.identity.metadata());
          if (answer.TTL <= 0n) throw new Error("the registration's lease expired");
        }
      } catch (err) {
        if (signal.aborted) return;
        this.options.identity.refused(err);
        this.lease = undefined;
        this.options.onProblem?.("proxy registration lost; registering again", err);
        await sleep(RETRY_MS, signal);
      }
    }
  }
}
