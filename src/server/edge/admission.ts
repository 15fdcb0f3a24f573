import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";

/**
 * Which requests the port serves at all, decided from the request's first
 * headers, before any body is read and before anything reaches etcd:
 *
 * - the Host (or HTTP/2 :authority) must be one of the proxy's own names, so
 *   a DNS-rebound name reaches nothing (CVE-2018-5702; etcd's
 *   --host-whitelist, answered with etcd's 421 and its words);
 * - a request a browser sends for a page of another site (its Origin is not
 *   the proxy's own nor allowed, or Sec-Fetch-Site says cross-site or
 *   same-site) is refused with 403, except a plain GET of the dashboard's
 *   files, so that links to the dashboard keep working.
 *
 * Clients that are not browsers send no Origin and no Sec-Fetch-Site
 * (etcdctl, gRPC libraries, curl, Prometheus) and are judged by Host alone.
 */
export interface RequestHead {
  method: string;
  /** The path with its query. */
  url: string;
  /** Host, or :authority over HTTP/2. */
  host: string | undefined;
  origin: string | undefined;
  /** Sec-Fetch-Site, which a browser sets and a page cannot. */
  fetchSite: string | undefined;
}

export interface Refusal {
  status: 403 | 421;
  body: string;
}

export interface AdmissionPolicy {
  /** Host names a request may carry; "*" admits any. IP literals are always admitted (see hostAdmitted). */
  hosts: readonly string[];
  /** --cors-allowed-origins: pages of these origins may call; "*" admits every page. */
  allowedOrigins: readonly string[];
  /** Paths any page may fetch with GET or HEAD (the dashboard's own files). */
  isPublicPath: (path: string) => boolean;
}

export class Admission {
  private readonly anyHost: boolean;
  private readonly exactHosts = new Set<string>();
  /** Certificate wildcards ("*.example.com"), kept as their suffix (".example.com"). */
  private readonly hostSuffixes: string[] = [];
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;

  constructor(private readonly policy: AdmissionPolicy) {
    this.anyHost = policy.hosts.includes("*");
    for (const name of policy.hosts) {
      const host = normalizeHostname(name);
      if (host.startsWith("*.")) this.hostSuffixes.push(host.slice(1));
      else this.exactHosts.add(host);
    }
    this.anyOrigin = policy.allowedOrigins.includes("*");
    this.origins = new Set(policy.allowedOrigins.map((o) => o.toLowerCase()));
  }

  /** Why the request is refused, or undefined when it may be served. */
  check(request: RequestHead): Refusal | undefined {
    if (request.host !== undefined && !this.hostAdmitted(request.host)) {
      return { status: 421, body: misdirected(hostnameOf(request.host)) };
    }
    if (!this.fromAnotherSite(request)) return undefined;
    const path = request.url.split("?", 1)[0]!;
    if ((request.method === "GET" || request.method === "HEAD") && this.policy.isPublicPath(path)) return undefined;
    return { status: 403, body: crossSite(request.origin) };
  }

  /**
   * A DNS rebinding attack needs a name the attacker's DNS answers for, so
   * only DNS names are judged. An IP literal names the address the client
   * dialled, and a page served elsewhere that calls it is another origin,
   * which the origin check refuses. A browser never sends a request without
   * a host, nor one whose host is no DNS name at all (clientv3 3.5.0 sends
   * `#initially=[…]` as its :authority).
   */
  hostAdmitted(hostHeader: string): boolean {
    if (this.anyHost) return true;
    const host = hostnameOf(hostHeader);
    if (!DNS_NAME.test(host) || isIP(host) !== 0 || this.exactHosts.has(host)) return true;
    // A wildcard covers exactly one label, as in certificate matching.
    return this.hostSuffixes.some((suffix) => host.endsWith(suffix) && !host.slice(0, -suffix.length).includes("."));
  }

  private fromAnotherSite(request: RequestHead): boolean {
    if (this.anyOrigin) return false;
    const origin = request.origin;
    if (origin !== undefined) return !this.origins.has(origin.toLowerCase()) && !sameOrigin(origin, request.host);
    // No Origin: a browser's GET of an image, a script or a page; its Sec-Fetch-Site tells where it came from.
    return request.fetchSite === "cross-site" || request.fetchSite === "same-site";
  }
}

/** What a browser can put in Host: letters, digits, hyphens, dots, and (Chromium allows them) underscores. */
const DNS_NAME = /^[a-z0-9_.-]+$/;

/** The page's origin names the host the request was sent to (behind a proxy that kept Host, its scheme may differ). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const page = new URL(origin);
    if (page.origin !== origin.toLowerCase().replace(/\/$/, "")) return false;
    return new URL(`${page.protocol}//${host}`).host === page.host;
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and anything malformed
  }
}

/** "Example.COM:2379" → "example.com", "[::1]:2379" → "::1", "localhost." → "localhost". */
export function hostnameOf(hostHeader: string): string {
  let host = hostHeader.trim().toLowerCase();
  if (host.startsWith("[")) host = host.slice(1, host.indexOf("]") === -1 ? undefined : host.indexOf("]"));
  else if (host.indexOf(":") === host.lastIndexOf(":")) host = host.split(":", 1)[0]!;
  return normalizeHostname(host);
}

function normalizeHostname(name: string): string {
  const host = name.trim().toLowerCase();
  return host.endsWith(".") ? host.slice(0, -1) : host;
}

/**
 * The names a proxy answers to when --host-whitelist is not given: its
 * listen address and advertised URL, this machine's name, localhost and
 * the loopback addresses, and the DNS names of its server certificate.
 */
export function defaultHosts(options: {
  listenHost: string;
  advertiseClientUrl: string | undefined;
  machineName: string;
  certificate: Buffer | undefined;
}): string[] {
  const hosts = ["localhost", "127.0.0.1", "::1", options.machineName];
  if (options.listenHost !== "" && isIP(options.listenHost) === 0) hosts.push(options.listenHost);
  const advertised = options.advertiseClientUrl;
  // A URL, or a bare host:port, which etcd's proxy also takes.
  if (advertised) hosts.push(hostnameOf(advertised.includes("://") ? urlHost(advertised) : advertised));
  if (options.certificate) hosts.push(...certificateNames(options.certificate));
  return [...new Set(hosts.filter((h) => h !== "").map(normalizeHostname))];
}

function urlHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "";
  }
}

/** The DNS names a certificate is valid for: its subject alternative names, else its common name. */
export function certificateNames(pem: Buffer): string[] {
  const cert = new X509Certificate(pem);
  const dns = (cert.subjectAltName ?? "")
    .split(", ")
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice("DNS:".length));
  if (dns.length > 0) return dns;
  const common = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  return common ? [common] : [];
}

/**
 * etcd's answer to a Host it does not know: its first and last lines, which
 * a client may match on, around what fixes it here (the proxy checks TLS
 * connections too, so etcd's "enable TLS" is no remedy).
 */
function misdirected(host: string): string {
  return `
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Reach the proxy by a name it knows: localhost, an IP address, its --advertise-client-url or --listen-addr host, or a name in its certificate.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd-connect-proxy start --host-whitelist ${JSON.stringify(host)}

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`;
}

function crossSite(origin: string | undefined): string {
  const from = origin === undefined ? "another site" : `origin ${origin}`;
  return `etcd-connect-proxy refused a request from a page of ${from}: browsers may call the proxy only from its own pages or from an origin in --cors-allowed-origins.\n`;
}
