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
  private list: Array<Endpoint<C>>;
  private currentIndex: number;
  private readonly now: () => number;

  constructor(
    members: ReadonlyArray<{ url: string; client: C }>,
    private readonly options: EndpointPoolOptions,
  ) {
    if (members.length === 0) throw new Error("at least one endpoint is required");
    this.list = members.map((m) => ({ url: m.url, client: m.client, failures: 0, downUntil: 0 }));
    this.now = options.now ?? Date.now;
    this.currentIndex = Math.floor((options.random ?? Math.random)() * members.length);
  }

  get endpoints(): ReadonlyArray<Endpoint<C>> {
    return this.list;
  }

  /**
   * Makes `urls` the endpoints (--endpoints-auto-sync-interval): those kept
   * keep their client and health, new ones get a client from `connect`, and
   * the others are returned for their owner to retire. The current endpoint
   * stays current if it is kept; otherwise the first kept or new one up
   * takes over. An empty list changes nothing.
   */
  sync(urls: readonly string[], connect: (url: string) => C): Array<Endpoint<C>> {
    if (urls.length === 0) return [];
    const current = this.current;
    const byUrl = new Map(this.list.map((e) => [e.url, e]));
    const next = [...new Set(urls)].map(
      (url) => byUrl.get(url) ?? { url, client: connect(url), failures: 0, downUntil: 0 },
    );
    const removed = this.list.filter((e) => !next.includes(e));
    this.list = next;
    const kept = next.indexOf(current);
    if (kept >= 0) this.currentIndex = kept;
    else {
      this.currentIndex = 0;
      this.currentIndex = next.indexOf(this.pick() ?? next[0]!);
    }
    return removed;
  }

  /** The endpoint new calls go to while it is healthy. */
  get current(): Endpoint<C> {
    return this.list[this.currentIndex]!;
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
    const n = this.list.length;
    let soonest: Endpoint<C> | undefined;
    for (let i = 0; i < n; i++) {
      const candidate = this.list[(this.currentIndex + i) % n]!;
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
      if (next) this.currentIndex = this.list.indexOf(next);
    }
  }

  /** Records a success; an endpoint that works becomes current if the current one is down. */
  markHealthy(endpoint: Endpoint<C>): void {
    endpoint.failures = 0;
    endpoint.downUntil = 0;
    if (!this.isUp(this.current) && this.list.includes(endpoint)) this.currentIndex = this.list.indexOf(endpoint);
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
