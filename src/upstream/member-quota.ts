import { get } from "./etcd-http.js";
import type { UpstreamTls } from "./h2-client.js";

const TIMEOUT_MS = 3000;
/** A member's quota changes only with a restart: asking once a minute is plenty. */
const KEEP_MS = 60_000;
const QUOTA_LINE = /^etcd_server_quota_backend_bytes\s+(\S+)$/m;

/**
 * Each member's backend quota (--quota-backend-bytes), which etcd's Status
 * does not tell before 3.6: read from the gauge etcd_server_quota_backend_bytes
 * on the member's /metrics, on its client URL, with the proxy's TLS.
 * Undefined when the member does not answer it.
 */
export class MemberQuotas {
  private readonly known = new Map<string, { bytes: number | undefined; at: number }>();

  constructor(private readonly tls: UpstreamTls | undefined) {}

  async of(url: string): Promise<number | undefined> {
    const kept = this.known.get(url);
    if (kept && Date.now() - kept.at < KEEP_MS) return kept.bytes;
    const bytes = await get(new URL("/metrics", url).href, this.tls, TIMEOUT_MS).then(quotaIn, () => undefined);
    this.known.set(url, { bytes, at: Date.now() });
    return bytes;
  }
}

function quotaIn(metrics: string): number | undefined {
  const value = Number(QUOTA_LINE.exec(metrics)?.[1]);
  return Number.isFinite(value) && value > 0 ? value : undefined;
}
