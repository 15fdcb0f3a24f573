import type { FlagSpec, ParsedFlags } from "./flags.js";

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
    name: "consistent-cache-prefix",
    type: "list",
    default: "",
    help: "keep an in-memory replica of every key under this prefix and answer Ranges inside it from memory, linearizable ones after one cheap check with etcd (repeat the flag, or separate prefixes with commas)",
  },
  {
    name: "consistent-cache-max-bytes",
    type: "uint",
    default: "268435456",
    help: "bytes the replicas of --consistent-cache-prefix may hold together; a prefix that does not fit is not served from memory",
  },
  {
    name: "coalesce-ranges",
    type: "bool",
    default: "true",
    help: "let identical Ranges from the same caller share one call to etcd, sent after they all arrived (linearizable reads stay linearizable); false sends each on its own",
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
    default: "8388608",
    help: "unread watch responses a client stream may hold; past it, its watchers step off their shared watches and catch up once it drains",
  },
  {
    name: "log-level",
    type: "string",
    default: "info",
    help: "log level: debug, info, warn or error (--debug forces debug)",
  },
] as const satisfies readonly FlagSpec[];

export type ProxyFlag = (typeof PROXY_FLAGS)[number];
/** The names of the flags whose value has this type: a misspelled name, or the wrong reader, does not compile. */
type FlagNamed<T extends FlagSpec["type"]> = Extract<ProxyFlag, { type: T }>["name"];

/** Reads a parsed flag by a name the table declares, as the type it declares. */
export function reader(parsed: ParsedFlags) {
  return {
    str: (n: FlagNamed<"string">) => parsed.values.get(n) as string,
    num: (n: FlagNamed<"uint" | "duration">) => parsed.values.get(n) as number,
    bool: (n: FlagNamed<"bool">) => parsed.values.get(n) as boolean,
    list: (n: FlagNamed<"list">) => parsed.values.get(n) as string[],
    given: (n: ProxyFlag["name"]) => parsed.given.has(n),
  };
}
