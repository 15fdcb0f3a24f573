/** Tunables that are not flags; each says why it has its value. */
export const DEFAULTS = {
  /** etcd's /health allows its linearizable probe read one second. */
  healthTimeoutMs: 1000,
  /** Calls without a deadline keep looking for a live endpoint this long (clientv3's dial timeout). */
  retryWindowMs: 5000,
  /** Back-off of a failed endpoint: short enough to notice a restart quickly. */
  backoffMinMs: 100,
  backoffMaxMs: 2000,
  /** gRPC's default receive limit, as etcd's Go proxy applies to clients. */
  clientReadMaxBytes: 4 * 1024 * 1024,
  /** etcd's /proxy/health gives the self-check's watch this long to be created. */
  proxyHealthWatchTimeoutMs: 3000,
  /** How long /metrics waits for one etcd member before asking the next. */
  etcdHttpTimeoutMs: 2000,
  /**
   * Recent events kept per shared watch, so late watchers asking for an
   * older revision are served from memory: small, since every watched range
   * keeps its own.
   */
  watchHistory: { maxEntries: 256, maxBytes: 256 * 1024 },
  /** etcd splits a fragmenting watcher's responses from its request limit plus gRPC overhead. */
  watchFragmentOverheadBytes: 512 * 1024,
  /**
   * A client stream that fell behind gets each watcher's unread events
   * batched into responses of up to this size: far below any client's
   * receive limit, large enough that catching up costs few messages.
   */
  watchBatchBytes: 64 * 1024,
  /** How often an unanswered watch progress request is repeated (etcd ignores it while a watcher catches up). */
  watchProgressRetryMs: 250,
  /** How long the range cache waits before asking etcd again for the watch it was refused. */
  cacheWatchRetryMs: 10_000,
  /** How long no read may fill an empty range cache before it closes its watch of every write. */
  cacheWatchIdleMs: 5_000,
  /** How long in-flight unary calls get to finish on shutdown before connections are closed. */
  shutdownGraceMs: 5000,
  /** How often, while shutting down, HTTP/1.1 connections that went idle are closed. */
  shutdownIdleSweepMs: 50,
  /**
   * The consistent cache: how long a read waits for its check and then for
   * the replica before going to etcd (kube-apiserver waits up to 3 s; a
   * proxy's client has a plain read to fall back on), keys per page while a
   * replica loads, and its retries.
   */
  consistentCache: {
    waitMs: 1000,
    pageKeys: 1000,
    loadTimeoutMs: 30_000,
    retryMs: { first: 100, max: 5000 },
    overBudgetRetryMs: 60_000,
    progressRetryMs: 10,
    eventsOnlyWaitMs: 50,
  },
  /** How often --discovery-srv's records are read again. */
  srvRefreshMs: 10_000,
} as const;
