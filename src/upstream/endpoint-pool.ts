/**
 * Which etcd endpoint serves the next call.
 *
 * As etcd's op-guide describes the proxy: start on a randomly chosen endpoint,
 * stay on it while it works, and switch to another one when it fails. A failed
 * endpoint sits out an exponentially growing back-off; when every endpoint is
 * down, the one whose back-off ends first is tried, so the proxy serves again
 * as soon as any member is back.
 *
 * Pure logic: the clients are opaque, time and randomness are injectable.
 */
export interface Endpoint<C> {
  /** Normalized URL, e.g. http://127.0.0.1:2379. */
  readonly url: string;
  readonly client: C;
  /** Failures since the last success. */
  failures: number;
  /** Until when (ms since the epoch) the endpoint is considered down. */
  downUntil: number;
}

export interface EndpointPoolOptions {
  /** First back-off after a failure; doubles per consecutive failure. */
  backoffMinMs: number;
  /** Upper bound of the back-off. */
  backoffMaxMs: number;
  now?: () => number;
  random?: () => number;
}

/** Shared by calls that have tried nothing yet, so the common path allocates nothing. */
const NONE_TRIED: ReadonlySet<never> = new Set();

export class EndpointPool<C> {
  readonly endpoints: ReadonlyArray<Endpoint<C>>;
  private currentIndex: number;
  private readonly now: () => number;

  constructor(
    members: ReadonlyArray<{ url: string; client: C }>,
    private readonly options: EndpointPoolOptions,
  ) {
    if (members.length === 0) throw new Error("at least one endpoint is required");
    this.endpoints = members.map((m) => ({ url: m.url, client: m.client, failures: 0, downUntil: 0 }));
    this.now = options.now ?? Date.now;
    this.currentIndex = Math.floor((options.random ?? Math.random)() * members.length);
  }

  /** The endpoint new calls go to while it is healthy. */
  get current(): Endpoint<C> {
    return this.endpoints[this.currentIndex]!;
  }

  isUp(endpoint: Endpoint<C>): boolean {
    return endpoint.downUntil <= this.now();
  }

  /**
   * The endpoint for the next attempt, skipping those already tried by this
   * call: the current one if it is up, else the next one up in ring order,
   * else the one that comes back soonest. Undefined when all were tried.
   */
  pick(tried: ReadonlySet<Endpoint<C>> = NONE_TRIED): Endpoint<C> | undefined {
    const n = this.endpoints.length;
    let soonest: Endpoint<C> | undefined;
    for (let i = 0; i < n; i++) {
      const candidate = this.endpoints[(this.currentIndex + i) % n]!;
      if (tried.has(candidate)) continue;
      if (this.isUp(candidate)) return candidate;
      if (!soonest || candidate.downUntil < soonest.downUntil) soonest = candidate;
    }
    return soonest;
  }

  /** Records a connection failure; moves traffic off the endpoint if it was current. */
  markFailed(endpoint: Endpoint<C>): void {
    endpoint.failures++;
    const backoff = Math.min(
      this.options.backoffMaxMs,
      this.options.backoffMinMs * 2 ** Math.min(endpoint.failures - 1, 16),
    );
    endpoint.downUntil = this.now() + backoff;
    if (endpoint === this.current) {
      const next = this.pick(new Set([endpoint]));
      if (next) this.currentIndex = this.endpoints.indexOf(next);
    }
  }

  /** Records a success; an endpoint that works becomes current if the current one is down. */
  markHealthy(endpoint: Endpoint<C>): void {
    endpoint.failures = 0;
    endpoint.downUntil = 0;
    if (!this.isUp(this.current)) this.currentIndex = this.endpoints.indexOf(endpoint);
  }
}

/**
 * etcd accepts endpoints with or without a scheme; we always carry one. An
 * endpoint without one gets `defaultScheme` (https when TLS flags are given,
 * as clientv3 does).
 */
export function normalizeEndpoint(raw: string, defaultScheme: "http" | "https" = "http"): string {
  const trimmed = raw.trim();
  if (trimmed === "") throw new Error("empty endpoint");
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `${defaultScheme}://${trimmed}`;
  const url = new URL(withScheme);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`unsupported endpoint scheme "${url.protocol}" in "${raw}" (use http:// or https://)`);
  }
  if (!url.port) throw new Error(`endpoint "${raw}" has no port`);
  return `${url.protocol}//${url.host}`;
}
