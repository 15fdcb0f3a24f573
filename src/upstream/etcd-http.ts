import * as http from "node:http";
import * as https from "node:https";
import type { UpstreamTls } from "./h2-client.js";

/** An endpoint as the upstream pool lists it. */
export interface EtcdHttpEndpoint {
  url: string;
  current: boolean;
}

/**
 * GETs one of etcd's plain HTTP paths (/metrics, /version) over HTTP/1.1,
 * as etcd serves them beside gRPC. Unlike etcd's proxy, which pins one
 * member at startup, this asks the endpoint in use first and moves on to
 * the others when it does not answer.
 */
export async function fetchFromEtcd(
  endpoints: readonly EtcdHttpEndpoint[],
  path: string,
  tls: UpstreamTls | undefined,
  timeoutMs: number,
): Promise<string> {
  const ordered = [...endpoints].sort((a, b) => Number(b.current) - Number(a.current));
  let lastError: unknown = new Error("no endpoints");
  for (const endpoint of ordered) {
    try {
      return await get(`${endpoint.url}${path}`, tls, timeoutMs);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** etcd's /metrics is a few hundred KiB; a member that sends more is cut off. */
const MAX_BODY_BYTES = 16 << 20;

/** GETs one path of one member (its URL with the path), with the proxy's TLS toward etcd. */
export function get(url: string, tls: UpstreamTls | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = { timeout: timeoutMs, ...(url.startsWith("https:") ? tls : {}) };
    const req = (url.startsWith("https:") ? https : http).get(url, options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
        if (body.length > MAX_BODY_BYTES) req.destroy(new Error(`${url}: answer over ${MAX_BODY_BYTES} bytes`));
      });
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`${url}: timed out`)));
    req.on("error", reject);
  });
}

/** The etcd release lines whose HTTP answers differ. */
export type EtcdLine = "3.4" | "3.5";

/**
 * The etcd in use, as its /version says: the document itself (the proxy's
 * own /version answers with it), and its release line, which shapes the
 * JSON gateway's errors as that etcd's gateway shapes them. The line is
 * asked again once it is older than `maxAgeMs`, so a rolling upgrade is
 * followed; when etcd cannot be asked, the last line known is kept, and
 * 3.5 (what most clusters run) before any is.
 */
export class EtcdVersion {
  private line: EtcdLine | undefined;
  /** The etcdserver version last read, e.g. "3.4.23". */
  private server: string | undefined;
  private askedAt = -Infinity;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly fetchDocument: () => Promise<string>,
    private readonly maxAgeMs = 30_000,
  ) {}

  /** etcd's /version answer, asked now. */
  document(): Promise<string> {
    this.pending ??= this.fetchDocument()
      .then((doc) => {
        this.remember(doc);
        return doc;
      })
      .finally(() => {
        this.askedAt = Date.now();
        this.pending = undefined;
      });
    return this.pending;
  }

  async releaseLine(): Promise<EtcdLine> {
    if (Date.now() - this.askedAt >= this.maxAgeMs) await this.document().catch(() => undefined);
    return this.knownLine();
  }

  /** The line as last known, without asking; asks in the background once it is stale. */
  knownLine(): EtcdLine {
    if (Date.now() - this.askedAt >= this.maxAgeMs) this.document().catch(() => undefined);
    return this.line ?? "3.5";
  }

  /**
   * Whether the etcd in use answers a watch stream's progress request only
   * after the events it owes the stream: fixed in 3.4.25 and 3.5.8 (etcd
   * issue 15220). False while its version is unknown.
   */
  ordersProgress(): boolean {
    if (Date.now() - this.askedAt >= this.maxAgeMs) this.document().catch(() => undefined);
    const [major = 0, minor = 0, patch = 0] = (this.server ?? "").split(".").map((n) => Number.parseInt(n, 10));
    if (major !== 3) return major > 3;
    return minor > 5 || (minor === 5 && patch >= 8) || (minor === 4 && patch >= 25);
  }

  private remember(doc: string): void {
    const server = (JSON.parse(doc) as { etcdserver?: unknown }).etcdserver;
    if (typeof server !== "string") return;
    this.server = server;
    this.line = /^3\.[0-4]\./.test(server) ? "3.4" : "3.5";
  }
}
