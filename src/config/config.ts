import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { normalizeEndpoint } from "../upstream/endpoint-pool.js";
import type { UpstreamTls } from "../upstream/upstream.js";
import { selfSignedCertificate } from "./self-signed.js";
import { FlagError, parseFlags, type FlagSpec, type ParsedFlags } from "./flags.js";

/** Every flag of `etcd grpc-proxy start` (etcd's `grpc-proxy start` help), same names and defaults, plus our own. */
export const PROXY_FLAGS = [
  {
    name: "listen-addr",
    type: "string",
    default: "127.0.0.1:23790",
    help: "listen address (gRPC, gRPC-Web, Connect and HTTP on one port)",
  },
  {
    name: "endpoints",
    type: "list",
    default: "127.0.0.1:2379",
    help: "comma separated etcd cluster endpoints",
  },
  {
    name: "endpoints-auto-sync-interval",
    type: "duration",
    default: "0s",
    help: "how often to sync the endpoint list from the cluster's members (0 disables)",
  },
  {
    name: "discovery-srv",
    type: "string",
    default: "",
    help: "domain name to query for SRV records describing cluster endpoints",
  },
  {
    name: "discovery-srv-name",
    type: "string",
    default: "",
    help: "service name to query when using DNS discovery",
  },
  {
    name: "insecure-discovery",
    type: "bool",
    default: "false",
    help: "accept insecure SRV records",
  },
  {
    name: "metrics-addr",
    type: "string",
    default: "",
    help: "listen for endpoint /metrics requests on an additional interface",
  },
  {
    name: "advertise-client-url",
    type: "string",
    default: "127.0.0.1:23790",
    help: "advertise address to register (if --resolver-prefix) and answer in MemberList; defaults to --listen-addr when not given; empty forwards MemberList to etcd",
  },
  {
    name: "resolver-prefix",
    type: "string",
    default: "",
    help: "prefix to use for registering proxy (must be shared with other grpc-proxy members)",
  },
  {
    name: "resolver-ttl",
    type: "uint",
    default: "0",
    help: "specify TTL, in seconds, when registering proxy endpoints",
  },
  {
    name: "namespace",
    type: "string",
    default: "",
    help: "string to prefix to all keys for namespacing requests",
  },
  {
    name: "enable-pprof",
    type: "bool",
    default: "false",
    help: 'Enable runtime profiling data via HTTP server. Address is at client URL + "/debug/pprof/"',
  },
  {
    name: "data-dir",
    type: "string",
    default: "default.proxy",
    help: "data directory for proxy state (used by --auto-tls)",
  },
  {
    name: "max-send-bytes",
    type: "uint",
    default: "1572864",
    help: "message send limits in bytes toward etcd",
  },
  {
    name: "max-recv-bytes",
    type: "uint",
    default: "2147483647",
    help: "message receive limits in bytes from etcd",
  },
  {
    name: "dial-keepalive-time",
    type: "duration",
    default: "0s",
    help: "keepalive time for client (proxy to etcd) connections (0 disables)",
  },
  {
    name: "dial-keepalive-timeout",
    type: "duration",
    default: "20s",
    help: "keepalive timeout for client (proxy to etcd) connections",
  },
  {
    name: "permit-without-stream",
    type: "bool",
    default: "false",
    help: "keepalive pings toward etcd even without active streams",
  },
  {
    name: "grpc-keepalive-min-time",
    type: "duration",
    default: "5s",
    help: "minimum interval duration that a client should wait before pinging proxy",
  },
  {
    name: "grpc-keepalive-interval",
    type: "duration",
    default: "2h",
    help: "frequency duration of server-to-client ping to check if a connection is alive (0 to disable)",
  },
  {
    name: "grpc-keepalive-timeout",
    type: "duration",
    default: "20s",
    help: "additional duration of wait before closing a non-responsive connection (0 to disable)",
  },
  {
    name: "cert",
    type: "string",
    default: "",
    help: "identify secure connections with etcd servers using this TLS certificate file",
  },
  {
    name: "key",
    type: "string",
    default: "",
    help: "identify secure connections with etcd servers using this TLS key file",
  },
  {
    name: "cacert",
    type: "string",
    default: "",
    help: "verify certificates of TLS-enabled secure etcd servers using this CA bundle",
  },
  {
    name: "insecure-skip-tls-verify",
    type: "bool",
    default: "false",
    help: "skip authentication of etcd server TLS certificates (CAUTION: this option should be enabled only for testing purposes)",
  },
  {
    name: "cert-file",
    type: "string",
    default: "",
    help: "identify secure connections to the proxy using this TLS certificate file",
  },
  {
    name: "key-file",
    type: "string",
    default: "",
    help: "identify secure connections to the proxy using this TLS key file",
  },
  {
    name: "trusted-ca-file",
    type: "string",
    default: "",
    help: "verify certificates of TLS-enabled secure proxy using this CA bundle (client certificates become required)",
  },
  {
    name: "client-crl-file",
    type: "string",
    default: "",
    help: "path to the client certificate revocation list file",
  },
  {
    name: "auto-tls",
    type: "bool",
    default: "false",
    help: "proxy TLS using generated certificates",
  },
  {
    name: "self-signed-cert-validity",
    type: "uint",
    default: "1",
    help: "the validity period of the proxy certificates, unit is year",
  },
  {
    name: "listen-cipher-suites",
    type: "list",
    default: "",
    help: "comma-separated list of supported TLS cipher suites between client/proxy (empty will be auto-populated by Node)",
  },
  {
    name: "tls-min-version",
    type: "string",
    default: "TLS1.2",
    help: "minimum TLS version supported by grpc proxy (TLS1.2 or TLS1.3)",
  },
  {
    name: "tls-max-version",
    type: "string",
    default: "",
    help: "maximum TLS version supported by grpc proxy (TLS1.2 or TLS1.3; empty means Node's default)",
  },
  {
    name: "experimental-serializable-ordering",
    type: "bool",
    default: "false",
    help: "ensure serializable reads have monotonically increasing store revisions across endpoints",
  },
  {
    name: "experimental-leasing-prefix",
    type: "string",
    default: "",
    help: "leasing metadata prefix for disconnected linearized reads",
  },
  {
    name: "experimental-enable-grpc-logging",
    type: "bool",
    default: "false",
    help: "logging all grpc requests and responses",
  },
  { name: "debug", type: "bool", default: "false", help: "enable debug-level logging" },
  {
    name: "max-concurrent-streams",
    type: "uint",
    // etcd advertises 2^32-1; a finite default bounds what one connection
    // can open (clients queue their streams past it, they are not refused).
    default: "1000",
    help: "maximum concurrent HTTP/2 streams per client connection",
  },
  // Ours, not etcd's.
  {
    name: "grpc-lane",
    type: "string",
    default: "native",
    help: "how native gRPC calls are served: native (the fast lane) or connect (Connect's handler, as for gRPC-Web)",
  },
  {
    name: "user",
    type: "string",
    default: "",
    help: "etcd user (name, or name:password) the proxy uses for its own calls (health, registration, cache watch) when etcd has auth on",
  },
  {
    name: "password",
    type: "string",
    default: "",
    help: "password of --user, when not given as name:password",
  },
  {
    name: "password-file",
    type: "string",
    default: "",
    help: "file holding the password of --user (its first line), so it stays out of the process list",
  },
  {
    name: "cors-allowed-origins",
    type: "list",
    default: "",
    help: "browser origins (scheme://host:port, or *) allowed to call the proxy from other sites; none means same-origin only",
  },
  {
    name: "host-whitelist",
    type: "list",
    default: "",
    help: "host names requests may be addressed to (421 otherwise, against DNS rebinding), or * for any; by default localhost, IP addresses, this machine's name, the --listen-addr and --advertise-client-url hosts and the server certificate's names",
  },
  {
    name: "cache-max-bytes",
    type: "uint",
    default: "67108864",
    help: "bytes the range cache may hold (0 turns the cache off)",
  },
  {
    name: "cache-max-entries",
    type: "uint",
    default: "65536",
    help: "entries the range cache may hold",
  },
  {
    name: "cache-ttl",
    type: "duration",
    default: "100ms",
    help: "longest a cached range answer is served after etcd produced it",
  },
  {
    name: "watch-buffer-bytes",
    type: "uint",
    default: "1048576",
    help: "unread watch responses a client stream may hold; past it, its watchers step off their shared watches and catch up once it drains",
  },
  {
    name: "log-level",
    type: "string",
    default: "info",
    help: "log level: debug, info, warn or error (--debug forces debug)",
  },
] as const satisfies readonly FlagSpec[];

type Flag = (typeof PROXY_FLAGS)[number];
/** The names of the flags whose value has this type: a misspelled name, or the wrong reader, does not compile. */
type FlagNamed<T extends FlagSpec["type"]> = Extract<Flag, { type: T }>["name"];

/** Reads a parsed flag by a name the table declares, as the type it declares. */
function reader(parsed: ParsedFlags) {
  return {
    str: (n: FlagNamed<"string">) => parsed.values.get(n) as string,
    num: (n: FlagNamed<"uint" | "duration">) => parsed.values.get(n) as number,
    bool: (n: FlagNamed<"bool">) => parsed.values.get(n) as boolean,
    list: (n: FlagNamed<"list">) => parsed.values.get(n) as string[],
    given: (n: Flag["name"]) => parsed.given.has(n),
  };
}

export interface ProxyConfig {
  listen: { host: string; port: number };
  /** Upstream etcd endpoints, normalized to http(s)://host:port. */
  endpoints: string[];
  /**
   * What MemberList (and later registration) advertises. `undefined` means
   * "the address actually listened on"; an empty string forwards MemberList.
   */
  advertiseClientUrl: string | undefined;
  /** --namespace: every key of KV, Watch, Lease, Election and Lock lives under it; "" for none. */
  namespace: string;
  /** --resolver-prefix and --resolver-ttl (seconds); registration is off when the prefix is "". */
  resolver: { prefix: string; ttlSeconds: number };
  maxSendBytes: number;
  maxRecvBytes: number;
  dialKeepaliveTimeMs: number;
  /** --discovery-srv and its companions: find the endpoints in DNS SRV records. */
  discovery: { domain: string; serviceName: string; insecure: boolean } | undefined;
  /** --enable-pprof: /debug/pprof/ on the client port and --metrics-addr. */
  pprof: boolean;
  /** --experimental-serializable-ordering: serializable reads never go back in revision. */
  serializableOrdering: boolean;
  /** --experimental-leasing-prefix; empty: no leasing. */
  leasingPrefix: string;
  /** --endpoints-auto-sync-interval; 0: the endpoints stay those given. */
  endpointsAutoSyncMs: number;
  dialKeepaliveTimeoutMs: number;
  permitWithoutStream: boolean;
  maxConcurrentStreams: number;
  /** TLS toward etcd (https endpoints); absent means none was configured. */
  upstreamTls: UpstreamTls | undefined;
  /** Server TLS for the client port; absent means cleartext. */
  tls: ServerTls | undefined;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** --experimental-enable-grpc-logging: every request and response payload, at info level, secrets redacted. */
  payloadLogging: boolean;
  /** --metrics-addr: a second listener for the HTTP paths (health, metrics). */
  metricsAddr: { host: string; port: number; https: boolean } | undefined;
  /** Serve native gRPC calls in the fast lane (see server/native/native-lane.ts). */
  nativeLane: boolean;
  /** --user, --password, --password-file: the proxy's own etcd identity; undefined: anonymous. */
  identity: { name: string; password: string } | undefined;
  /** gRPC keepalive toward clients: --grpc-keepalive-min-time, -interval, -timeout. */
  serverKeepalive: { minTimeMs: number; intervalMs: number; timeoutMs: number };
  /** --cors-allowed-origins; empty: browsers may only call from the proxy's own origin. */
  corsAllowedOrigins: string[];
  /** --host-whitelist; undefined: the proxy's own names (server/edge/admission.ts defaultHosts). */
  hostWhitelist: string[] | undefined;
  /** The range cache (--cache-max-bytes, --cache-max-entries, --cache-ttl); maxBytes 0 turns it off. */
  cache: { maxBytes: number; maxEntries: number; ttlMs: number };
  /** Per client Watch stream: unread response bytes before its watchers step aside (--watch-buffer-bytes). */
  watchBufferBytes: number;
}

/** TLS on the client port, as node's TLS server takes it. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** --trusted-ca-file: client certificates become required and are verified against it. */
  ca?: Buffer;
  /** --client-crl-file: revoked client certificates are refused. */
  crl?: Buffer;
  /** --listen-cipher-suites, in OpenSSL's names. */
  ciphers?: string;
  minVersion: "TLSv1.2" | "TLSv1.3";
  maxVersion?: "TLSv1.2" | "TLSv1.3";
}

/**
 * Go's (IANA) names of the TLS 1.2 suites etcd accepts in
 * --listen-cipher-suites, and OpenSSL's names for them, which node uses.
 * TLS 1.3 suites are not configurable, in Go as here.
 */
const CIPHER_SUITES: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
};

/** The largest HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS value (2^32 - 1). */
const MAX_STREAMS = 4294967295;

function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new FlagError(`invalid --${flag} "${text}": expected host:port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** The proxy's own etcd user, from --user (name or name:password), --password or --password-file. */
function buildIdentity(
  user: string,
  password: string,
  passwordFile: string,
): { name: string; password: string } | undefined {
  const given = [user.includes(":"), password !== "", passwordFile !== ""].filter(Boolean).length;
  if (user === "") {
    if (given > 0) throw new FlagError("--password and --password-file need --user");
    return undefined;
  }
  if (given !== 1)
    throw new FlagError("--user needs exactly one password: name:password, --password or --password-file");
  if (user.includes(":")) {
    const at = user.indexOf(":");
    return { name: user.slice(0, at), password: user.slice(at + 1) };
  }
  if (password !== "") return { name: user, password };
  try {
    return { name: user, password: readFileSync(passwordFile, "utf8").split("\n")[0]!.trimEnd() };
  } catch (err) {
    throw new FlagError(`cannot read --password-file: ${(err as Error).message}`);
  }
}

/** Builds the proxy's configuration from `start`'s arguments; throws FlagError on bad input. */
export function buildConfig(argv: readonly string[]): ProxyConfig {
  const parsed = parseFlags(PROXY_FLAGS, argv);
  if (parsed.positional.length > 0) throw new FlagError(`unexpected argument "${parsed.positional[0]}"`);
  validateRegistration(parsed);
  const { str, num, bool, list, given } = reader(parsed);

  const upstreamTls = buildUpstreamTls(str("cert"), str("key"), str("cacert"), bool("insecure-skip-tls-verify"));
  const endpointList = list("endpoints");
  if (endpointList.length === 0) throw new FlagError("--endpoints must name at least one etcd endpoint");
  const endpoints = endpointList.map((e) => {
    try {
      return normalizeEndpoint(e, upstreamTls ? "https" : "http");
    } catch (err) {
      throw new FlagError(`invalid --endpoints: ${(err as Error).message}`);
    }
  });

  const certFile = str("cert-file");
  const keyFile = str("key-file");
  if ((certFile === "") !== (keyFile === "")) throw new FlagError("--cert-file and --key-file must be given together");

  const tls = buildServerTls(parsed, ...serverCertificate(parsed, certFile, keyFile));
  const logLevel = bool("debug") ? "debug" : str("log-level");
  if (!["debug", "info", "warn", "error", "silent"].includes(logLevel)) {
    throw new FlagError(`invalid --log-level "${logLevel}": expected debug, info, warn or error`);
  }
  const lane = str("grpc-lane");
  if (lane !== "native" && lane !== "connect")
    throw new FlagError(`invalid --grpc-lane "${lane}": expected native or connect`);
  const maxStreams = num("max-concurrent-streams");
  if (maxStreams < 1 || maxStreams > MAX_STREAMS)
    throw new FlagError(`--max-concurrent-streams must be between 1 and ${MAX_STREAMS}`);
  if (num("watch-buffer-bytes") < 1) throw new FlagError("--watch-buffer-bytes must be positive");
  if (num("max-send-bytes") < 1 || num("max-recv-bytes") < 1)
    throw new FlagError("--max-send-bytes and --max-recv-bytes must be positive");

  return {
    listen: parseHostPort(str("listen-addr"), "listen-addr"),
    endpoints,
    advertiseClientUrl: given("advertise-client-url") ? str("advertise-client-url") : undefined,
    namespace: str("namespace"),
    resolver: { prefix: str("resolver-prefix"), ttlSeconds: num("resolver-ttl") },
    maxSendBytes: num("max-send-bytes"),
    maxRecvBytes: num("max-recv-bytes"),
    dialKeepaliveTimeMs: num("dial-keepalive-time"),
    endpointsAutoSyncMs: num("endpoints-auto-sync-interval"),
    serializableOrdering: bool("experimental-serializable-ordering"),
    leasingPrefix: str("experimental-leasing-prefix"),
    pprof: bool("enable-pprof"),
    discovery:
      str("discovery-srv") === ""
        ? undefined
        : {
            domain: str("discovery-srv"),
            serviceName: str("discovery-srv-name"),
            insecure: bool("insecure-discovery"),
          },
    dialKeepaliveTimeoutMs: num("dial-keepalive-timeout"),
    permitWithoutStream: bool("permit-without-stream"),
    maxConcurrentStreams: maxStreams,
    upstreamTls:
      upstreamTls ?? (endpoints.some((e) => e.startsWith("https:")) ? { rejectUnauthorized: true } : undefined),
    tls,
    logLevel: logLevel as ProxyConfig["logLevel"],
    payloadLogging: bool("experimental-enable-grpc-logging"),
    nativeLane: lane === "native",
    watchBufferBytes: num("watch-buffer-bytes"),
    corsAllowedOrigins: list("cors-allowed-origins").filter((o) => o !== ""),
    hostWhitelist: hostWhitelist(parsed),
    serverKeepalive: {
      minTimeMs: num("grpc-keepalive-min-time"),
      intervalMs: num("grpc-keepalive-interval"),
      timeoutMs: num("grpc-keepalive-timeout"),
    },
    identity: buildIdentity(str("user"), str("password"), str("password-file")),
    cache: { maxBytes: num("cache-max-bytes"), maxEntries: num("cache-max-entries"), ttlMs: num("cache-ttl") },
    metricsAddr: parseMetricsAddr(str("metrics-addr"), tls !== undefined),
  };
}

/** --host-whitelist as etcd reads it: a list of names, where "*", or a given but empty list, admits any host. */
function hostWhitelist(parsed: ParsedFlags): string[] | undefined {
  const { given, list } = reader(parsed);
  if (!given("host-whitelist")) return undefined;
  const hosts = list("host-whitelist").filter((h) => h !== "");
  return hosts.length === 0 ? ["*"] : hosts;
}

/**
 * The command line with its secrets hidden, for anyone who may read it
 * (/debug/pprof/cmdline): --password's value, and the password of
 * --user name:password. Both spellings, --flag=value and --flag value.
 */
export function redactCommandLine(argv: readonly string[]): string[] {
  const out = [...argv];
  const hide = (flag: string, value: string) =>
    flag === "password" ? REDACTED : value.includes(":") ? `${value.slice(0, value.indexOf(":"))}:${REDACTED}` : value;
  for (let i = 0; i < out.length; i++) {
    const m = /^--(password|user)(=(.*))?$/s.exec(out[i]!);
    if (!m) continue;
    if (m[2] !== undefined) out[i] = `--${m[1]}=${hide(m[1]!, m[3]!)}`;
    else if (i + 1 < out.length) out[i + 1] = hide(m[1]!, out[++i]!);
  }
  return out;
}

const REDACTED = "[redacted]";

/** etcd's startup checks for the registration flags. */
function validateRegistration(parsed: ParsedFlags): void {
  const { str, num } = reader(parsed);
  const prefix = str("resolver-prefix");
  const ttl = num("resolver-ttl");
  if (prefix !== "" && ttl < 1) throw new FlagError("invalid resolver-ttl");
  if (prefix === "" && ttl > 0) throw new FlagError("invalid resolver-prefix");
}

/**
 * TLS toward etcd from --cert, --key, --cacert and --insecure-skip-tls-verify.
 * As in etcd, the client certificate must not carry a Common Name: etcd would
 * authenticate every proxied request as that CN's user, whoever the client is.
 */
function buildUpstreamTls(
  certFile: string,
  keyFile: string,
  caFile: string,
  insecure: boolean,
): UpstreamTls | undefined {
  if (!certFile && !keyFile && !caFile && !insecure) return undefined;
  if ((certFile === "") !== (keyFile === "")) throw new FlagError("--cert and --key must be given together");
  const tls: UpstreamTls = { rejectUnauthorized: !insecure };
  if (caFile) tls.ca = readPem(caFile, "cacert");
  if (certFile) {
    tls.cert = readPem(certFile, "cert");
    tls.key = readPem(keyFile, "key");
    let commonName: string | undefined;
    try {
      commonName = /^CN=(.*)$/m.exec(new X509Certificate(tls.cert).subject)?.[1];
    } catch (err) {
      throw new FlagError(`--cert "${certFile}" is not a PEM certificate: ${(err as Error).message}`);
    }
    if (commonName) {
      throw new FlagError(
        `--cert "${certFile}" has a non-empty Common Name (${commonName}); etcd would authenticate every proxied request as that user, so the proxy's client certificate must have none`,
      );
    }
  }
  return tls;
}

/** --metrics-addr, e.g. http://127.0.0.1:9379; https serves with the client port's certificate. */
function parseMetricsAddr(value: string, haveTls: boolean): ProxyConfig["metricsAddr"] {
  if (value === "") return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new FlagError(`invalid --metrics-addr "${value}": expected a URL such as http://127.0.0.1:9379`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new FlagError(`invalid --metrics-addr "${value}": use http:// or https://`);
  }
  if (url.protocol === "https:" && !haveTls) {
    throw new FlagError("an https --metrics-addr needs --cert-file and --key-file (or --auto-tls)");
  }
  const { host, port } = parseHostPort(url.host.includes(":") ? url.host : `${url.host}:80`, "metrics-addr");
  return { host, port, https: url.protocol === "https:" };
}

/** --cert-file and --key-file, or with --auto-tls (and neither given) a self-signed pair. */
function serverCertificate(parsed: ParsedFlags, certFile: string, keyFile: string): [string, string] {
  const { str, num, bool } = reader(parsed);
  if (certFile || !bool("auto-tls")) return [certFile, keyFile];
  const years = num("self-signed-cert-validity");
  if (years < 1) throw new FlagError("--self-signed-cert-validity must be at least 1 (year) with --auto-tls");
  const listen = parseHostPort(str("listen-addr"), "listen-addr");
  try {
    const pair = selfSignedCertificate(str("data-dir"), listen.host, years);
    return [pair.certFile, pair.keyFile];
  } catch (err) {
    throw new FlagError((err as Error).message);
  }
}

/** TLS for the client port from --cert-file, --key-file and the flags that refine it, with etcd's checks. */
function buildServerTls(parsed: ParsedFlags, certFile: string, keyFile: string): ServerTls | undefined {
  const { str, list, given } = reader(parsed);
  const refinements = [
    "trusted-ca-file",
    "client-crl-file",
    "listen-cipher-suites",
    "tls-min-version",
    "tls-max-version",
  ] as const;
  if (!certFile) {
    const refined = refinements.find((f) => given(f));
    if (refined) throw new FlagError(`--${refined} needs TLS on the client port: give --cert-file and --key-file too`);
    return undefined;
  }
  const version = (flag: "tls-min-version" | "tls-max-version"): ServerTls["minVersion"] | undefined => {
    const v = str(flag);
    if (v === "") return undefined;
    if (v !== "TLS1.2" && v !== "TLS1.3") throw new FlagError(`invalid --${flag} "${v}": expected TLS1.2 or TLS1.3`);
    return v === "TLS1.2" ? "TLSv1.2" : "TLSv1.3";
  };
  const minVersion = version("tls-min-version") ?? "TLSv1.2";
  const maxVersion = version("tls-max-version");
  if (maxVersion && minVersion > maxVersion) throw new FlagError("--tls-min-version is greater than --tls-max-version");
  const suites = list("listen-cipher-suites");
  if (suites.length > 0 && minVersion === "TLSv1.3") {
    throw new FlagError("--listen-cipher-suites cannot be used with TLS1.3 only (TLS 1.3 suites are not configurable)");
  }
  const ciphers = suites.map((name) => {
    const openssl = CIPHER_SUITES[name];
    if (!openssl) throw new FlagError(`unsupported cipher suite "${name}" in --listen-cipher-suites`);
    return openssl;
  });
  const tls: ServerTls = { cert: readPem(certFile, "cert-file"), key: readPem(keyFile, "key-file"), minVersion };
  if (maxVersion) tls.maxVersion = maxVersion;
  if (ciphers.length > 0) tls.ciphers = ciphers.join(":");
  if (str("trusted-ca-file")) tls.ca = readPem(str("trusted-ca-file"), "trusted-ca-file");
  if (str("client-crl-file")) tls.crl = readPem(str("client-crl-file"), "client-crl-file");
  return tls;
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new FlagError(
      `cannot read --${flag} "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}
