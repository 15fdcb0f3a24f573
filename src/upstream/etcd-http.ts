import * as http from "node:http";
import * as https from "node:https";
import type { UpstreamTls } from "../upstream/upstream.js";

/**
 * etcd's own metrics, for the proxy's /metrics, as etcd's proxy serves them.
 * Unlike etcd's proxy, which pins one member at startup, this asks the
 * endpoint in use first and moves on to the others when it does not answer.
 */
export async function fetchEtcdMetrics(
  endpoints: ReadonlyArray<{ url: string; current: boolean }>,
  tls: UpstreamTls | undefined,
  timeoutMs: number,
): Promise<string> {
  const ordered = [...endpoints].sort((a, b) => Number(b.current) - Number(a.current));
  let lastError: unknown = new Error("no endpoints");
  for (const endpoint of ordered) {
    try {
      return await get(`${endpoint.url}/metrics`, tls, timeoutMs);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

function get(url: string, tls: UpstreamTls | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = { timeout: timeoutMs, ...(url.startsWith("https:") ? tls : {}) };
    const req = (url.startsWith("https:") ? https : http).get(url, options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`${url}: timed out`)));
    req.on("error", reject);
  });
}
