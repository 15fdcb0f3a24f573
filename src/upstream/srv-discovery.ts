import { promises as dns } from "node:dns";
import * as tls from "node:tls";
import type { UpstreamTls } from "./h2-client.js";

export interface SrvDiscovery {
  /** --discovery-srv: the domain whose SRV records name the cluster's client endpoints. */
  domain: string;
  /** --discovery-srv-name: a suffix of the service names (`_etcd-client-<name>._tcp`). */
  serviceName: string;
  /** --insecure-discovery: take the records as they are, unvalidated. */
  insecure: boolean;
}

/** How long a TLS validation of one discovered endpoint may take. */
const VALIDATE_TIMEOUT_MS = 5000;

/** The discovered endpoints, and the ones dropped by validation with why. */
export interface Discovered {
  endpoints: string[];
  rejected: Array<{ endpoint: string; reason: string }>;
}

/**
 * etcd's DNS SRV discovery of client endpoints, as `etcd grpc-proxy start`
 * does it: `_etcd-client-ssl._tcp.<domain>` gives https endpoints and
 * `_etcd-client._tcp.<domain>` http ones (each service name suffixed with
 * `-<serviceName>` when given), each at its record's target and port. It
 * fails only when both lookups fail. Unless `insecure`, only https
 * endpoints whose TLS handshake verifies, against the CA and with the
 * domain as the server name, are kept; http ones are dropped as insecure.
 */
export async function discoverEndpoints(
  discovery: SrvDiscovery,
  upstreamTls: UpstreamTls | undefined,
): Promise<Discovered> {
  const lookups = await Promise.allSettled(
    (["https", "http"] as const).map(async (scheme) => {
      const records = await dns.resolveSrv(`_${serviceOf(scheme, discovery.serviceName)}._tcp.${discovery.domain}`);
      return records.map((r) => `${scheme}://${hostPort(r.name.replace(/\.$/, ""), r.port)}`);
    }),
  );
  const failures = lookups.filter((l): l is PromiseRejectedResult => l.status === "rejected");
  if (failures.length === lookups.length) {
    const reasons = failures.map((f) => (f.reason as Error).message).join(" and ");
    throw new Error(`dns lookup errors: ${reasons}`);
  }
  const found = [...new Set(lookups.flatMap((l) => (l.status === "fulfilled" ? l.value : [])))];
  if (discovery.insecure) return { endpoints: found, rejected: [] };
  const checked = await Promise.all(
    found.map(async (endpoint) => ({ endpoint, reason: await validate(endpoint, discovery.domain, upstreamTls) })),
  );
  return {
    endpoints: checked.filter((c) => c.reason === undefined).map((c) => c.endpoint),
    rejected: checked.filter((c) => c.reason !== undefined) as Array<{ endpoint: string; reason: string }>,
  };
}

/** etcd's service names: etcd-client, etcd-client-ssl, each with `-<name>` when a name is given. */
function serviceOf(scheme: "http" | "https", serviceName: string): string {
  const service = scheme === "https" ? "etcd-client-ssl" : "etcd-client";
  return serviceName === "" ? service : `${service}-${serviceName}`;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Why `endpoint` fails etcd's check of a discovered endpoint (a verified TLS handshake), or undefined. */
function validate(endpoint: string, domain: string, upstreamTls: UpstreamTls | undefined): Promise<string | undefined> {
  const url = new URL(endpoint);
  if (url.protocol !== "https:") return Promise.resolve(`${JSON.stringify(endpoint)} is insecure`);
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(url.port),
      servername: domain,
      ca: upstreamTls?.ca,
      cert: upstreamTls?.cert,
      key: upstreamTls?.key,
      ALPNProtocols: ["h2"],
      timeout: VALIDATE_TIMEOUT_MS,
    });
    const done = (reason: string | undefined) => {
      socket.destroy();
      resolve(reason);
    };
    socket.once("secureConnect", () => done(undefined));
    socket.once("timeout", () => done(`${endpoint}: TLS handshake timed out`));
    socket.once("error", (err) => done(`${endpoint}: ${err.message}`));
  });
}
