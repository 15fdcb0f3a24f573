import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { UpstreamTls } from "./h2-client.js";

/** etcd serves its metrics as text; a member's page is far below this. */
const MAX_METRICS_BYTES = 8 << 20;
const TIMEOUT_MS = 3000;
/** A member's quota changes only with a restart: asking once a minute is plenty. */
const KEEP_MS = 60_000;
// Whole lines only: a chunk may end inside the number.
const QUOTA_LINE = /^etcd_server_quota_backend_bytes\s+(\S+)\r?\n/m;

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
    const bytes = await this.scrape(url).catch(() => undefined);
    this.known.set(url, { bytes, at: Date.now() });
    return bytes;
  }

  private scrape(url: string): Promise<number | undefined> {
    const target = new URL("/metrics", url);
    const send = target.protocol === "https:" ? httpsRequest : httpRequest;
    const tls = target.protocol === "https:" ? this.tls : undefined;
    return new Promise((resolve, reject) => {
      const req = send(
        target,
        {
          timeout: TIMEOUT_MS,
          ca: tls?.ca,
          cert: tls?.cert,
          key: tls?.key,
          rejectUnauthorized: tls?.rejectUnauthorized,
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            return resolve(undefined);
          }
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
            const quota = parse(text);
            if (quota !== undefined || text.length > MAX_METRICS_BYTES) {
              req.destroy();
              resolve(quota);
            }
          });
          res.on("end", () => resolve(parse(text + "\n")));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end();
    });
  }
}

function parse(text: string): number | undefined {
  const found = QUOTA_LINE.exec(text);
  const value = found ? Number(found[1]) : NaN;
  return Number.isFinite(value) ? value : undefined;
}
