import { readFileSync } from "node:fs";
import { normalizeEndpoint } from "../upstream/endpoint-pool.js";
import type { UpstreamTls } from "../upstream/h2-client.js";
import { FlagError, parseFlags, type ParsedFlags } from "./flags.js";
import { PROXY_FLAGS, reader } from "./proxy-flags.js";
import {
  loadServerTls,
  loadUpstreamTls,
  parseServerTls,
  parseUpstreamTls,
  type ServerTls,
  type ServerTlsFiles,
  type UpstreamTlsFiles,
} from "./tls.js";

export type { ServerTls };

/** Log levels as --log-level names them ("silent" for tests). */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/**
 * The proxy's configuration, grouped by the feature that reads each part
 * (src/assembly/): each flag is declared once in proxy-flags.ts and lands
 * in one field here. `ServerT`, `UpstreamT` and `IdentityT` are the TLS and
 * identity material: named files as parsed (ProxySettings), read as the
 * proxy starts (ProxyConfig).
 */
interface Grouped<ServerT, UpstreamT, IdentityT> {
  /** The logger: --log-level (--debug forces debug) and --experimental-enable-grpc-logging's payloads. */
  log: { level: LogLevel; payloads: boolean };
  /** The way to etcd (assembly/etcd-connection.ts, endpoint-following.ts). */
  etcd: {
    /** --endpoints, normalized to http(s)://host:port. */
    endpoints: string[];
    /** --discovery-srv and its companions: find the endpoints in DNS SRV records. */
    discovery: { domain: string; serviceName: string; insecure: boolean } | undefined;
    /** --endpoints-auto-sync-interval; 0: the endpoints stay those given. */
    autoSyncMs: number;
    /** TLS toward etcd (--cert, --key, --cacert, --insecure-skip-tls-verify); undefined: none configured. */
    tls: UpstreamT | undefined;
    /** --max-send-bytes and --max-recv-bytes, per message. */
    maxSendBytes: number;
    maxRecvBytes: number;
    /** --dial-keepalive-time, --dial-keepalive-timeout, --permit-without-stream. */
    keepalive: { timeMs: number; timeoutMs: number; withoutStream: boolean };
    /** --user, --password, --password-file: the proxy's own etcd identity; undefined: anonymous. */
    identity: IdentityT | undefined;
    /** --experimental-serializable-ordering: serializable reads never go back in revision. */
    serializableOrdering: boolean;
    /** --coalesce-ranges: identical Ranges from one caller share calls to etcd. */
    coalesceRanges: boolean;
  };
  /** --namespace: every key of KV, Watch, Lease, Election and Lock lives under it; "" for none. */
  namespace: string;
  /** Watch coalescing (assembly/watching.ts). */
  watch: {
    /** --watch-buffer-bytes: unread response bytes a client stream may hold before its watchers step aside. */
    bufferBytes: number;
    /** --max-send-bytes: watch responses are fragmented past it, as etcd does. */
    maxSendBytes: number;
  };
  /** The range cache (--cache-max-bytes, --cache-max-entries, --cache-ttl); maxBytes 0 turns it off. */
  cache: { maxBytes: number; maxEntries: number; ttlMs: number };
  /** The consistent cache (assembly/consistent-cache.ts): --consistent-cache-prefix, none when empty, and its byte budget. */
  consistentCache: { prefixes: string[]; maxBytes: number };
  /** --experimental-leasing-prefix; empty: no leasing. */
  leasing: { prefix: string };
  /** --resolver-prefix and --resolver-ttl (seconds); registration is off when the prefix is "". */
  registration: { prefix: string; ttlSeconds: number };
  /** The client port and --metrics-addr (assembly/client-port.ts). */
  clientPort: {
    listen: { host: string; port: number };
    /**
     * What MemberList (and registration) advertises. `undefined` means "the
     * address actually listened on"; an empty string forwards MemberList.
     */
    advertiseClientUrl: string | undefined;
    /** TLS on the client port; undefined: cleartext. */
    tls: ServerT | undefined;
    /** Serve native gRPC calls in the fast lane (server/native/native-lane.ts), else through Connect. */
    nativeLane: boolean;
    maxConcurrentStreams: number;
    /** gRPC keepalive toward clients: --grpc-keepalive-min-time, -interval, -timeout. */
    keepalive: { minTimeMs: number; intervalMs: number; timeoutMs: number };
    /** --cors-allowed-origins; empty: browsers may only call from the proxy's own origin. */
    corsAllowedOrigins: string[];
    /** --host-whitelist; undefined: the proxy's own names (server/edge/admission.ts defaultHosts). */
    hostWhitelist: string[] | undefined;
    /** --enable-pprof: /debug/pprof/ on the client port and --metrics-addr. */
    pprof: boolean;
    /** --metrics-addr: a second listener for the HTTP paths (health, metrics). */
    metricsAddr: { host: string; port: number; https: boolean } | undefined;
  };
}

/** The proxy's configuration as the flags give it, checked, with no file read. */
export type ProxySettings = Grouped<
  ServerTlsFiles,
  UpstreamTlsFiles,
  { name: string; password: string } | { name: string; passwordFile: string }
>;

/** The proxy's configuration with its files read, as the proxy starts with it. */
export type ProxyConfig = Grouped<ServerTls, UpstreamTls, { name: string; password: string }>;

/** The largest HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS value (2^32 - 1). */
const MAX_STREAMS = 4294967295;

function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new FlagError(`invalid --${flag} "${text}": expected host:port`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** The proxy's own etcd user, from --user (name or name:password), --password or --password-file. */
function parseIdentity(user: string, password: string, passwordFile: string): ProxySettings["etcd"]["identity"] {
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
  return password !== "" ? { name: user, password } : { name: user, passwordFile };
}

function loadIdentity(identity: ProxySettings["etcd"]["identity"]): ProxyConfig["etcd"]["identity"] {
  if (identity === undefined || "password" in identity) return identity;
  try {
    return { name: identity.name, password: readFileSync(identity.passwordFile, "utf8").split("\n")[0]!.trimEnd() };
  } catch (err) {
    throw new FlagError(`cannot read --password-file: ${(err as Error).message}`);
  }
}

/** Parses and loads `start`'s arguments at once; throws FlagError on bad input. */
export function buildConfig(argv: readonly string[]): ProxyConfig {
  return loadConfig(parseConfig(argv));
}

/**
 * Reads the files the settings name (certificates, keys, the password
 * file; --auto-tls's pair is made here), as the proxy starts. Throws
 * FlagError, with the flag's name, on a file that cannot be used.
 */
export function loadConfig(settings: ProxySettings): ProxyConfig {
  const { etcd, clientPort } = settings;
  const https = etcd.endpoints.some((e) => e.startsWith("https:"));
  return {
    ...settings,
    etcd: {
      ...etcd,
      tls: etcd.tls ? loadUpstreamTls(etcd.tls) : https ? { rejectUnauthorized: true } : undefined,
      identity: loadIdentity(etcd.identity),
    },
    clientPort: { ...clientPort, tls: clientPort.tls ? loadServerTls(clientPort.tls) : undefined },
  };
}

/** The settings `start`'s arguments give, checked, with no file read; throws FlagError on bad input. */
export function parseConfig(argv: readonly string[]): ProxySettings {
  const parsed = parseFlags(PROXY_FLAGS, argv);
  if (parsed.positional.length > 0) throw new FlagError(`unexpected argument "${parsed.positional[0]}"`);
  validateRegistration(parsed);
  const { str, num, bool, list, given } = reader(parsed);

  const upstreamTls = parseUpstreamTls(parsed);
  const endpointList = list("endpoints");
  if (endpointList.length === 0) throw new FlagError("--endpoints must name at least one etcd endpoint");
  const endpoints = endpointList.map((e) => {
    try {
      return normalizeEndpoint(e, upstreamTls ? "https" : "http");
    } catch (err) {
      throw new FlagError(`invalid --endpoints: ${(err as Error).message}`);
    }
  });

  const listen = parseHostPort(str("listen-addr"), "listen-addr");
  const tls = parseServerTls(parsed, listen.host);
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
    log: { level: logLevel as LogLevel, payloads: bool("experimental-enable-grpc-logging") },
    etcd: {
      endpoints,
      discovery:
        str("discovery-srv") === ""
          ? undefined
          : {
              domain: str("discovery-srv"),
              serviceName: str("discovery-srv-name"),
              insecure: bool("insecure-discovery"),
            },
      autoSyncMs: num("endpoints-auto-sync-interval"),
      tls: upstreamTls,
      maxSendBytes: num("max-send-bytes"),
      maxRecvBytes: num("max-recv-bytes"),
      keepalive: {
        timeMs: num("dial-keepalive-time"),
        timeoutMs: num("dial-keepalive-timeout"),
        withoutStream: bool("permit-without-stream"),
      },
      identity: parseIdentity(str("user"), str("password"), str("password-file")),
      serializableOrdering: bool("experimental-serializable-ordering"),
      coalesceRanges: bool("coalesce-ranges"),
    },
    namespace: str("namespace"),
    watch: { bufferBytes: num("watch-buffer-bytes"), maxSendBytes: num("max-send-bytes") },
    cache: { maxBytes: num("cache-max-bytes"), maxEntries: num("cache-max-entries"), ttlMs: num("cache-ttl") },
    consistentCache: { prefixes: consistentCachePrefixes(parsed), maxBytes: num("consistent-cache-max-bytes") },
    leasing: { prefix: str("experimental-leasing-prefix") },
    registration: { prefix: str("resolver-prefix"), ttlSeconds: num("resolver-ttl") },
    clientPort: {
      listen,
      advertiseClientUrl: given("advertise-client-url") ? str("advertise-client-url") : undefined,
      tls,
      nativeLane: lane === "native",
      maxConcurrentStreams: maxStreams,
      keepalive: {
        minTimeMs: num("grpc-keepalive-min-time"),
        intervalMs: num("grpc-keepalive-interval"),
        timeoutMs: num("grpc-keepalive-timeout"),
      },
      corsAllowedOrigins: list("cors-allowed-origins").filter((o) => o !== ""),
      hostWhitelist: hostWhitelist(parsed),
      pprof: bool("enable-pprof"),
      metricsAddr: parseMetricsAddr(str("metrics-addr"), tls !== undefined),
    },
  };
}

/** --consistent-cache-prefix: distinct, non-empty prefixes, none inside another. */
function consistentCachePrefixes(parsed: ParsedFlags): string[] {
  const { list } = reader(parsed);
  const prefixes = [...new Set(list("consistent-cache-prefix"))];
  if (prefixes.includes("")) throw new FlagError("--consistent-cache-prefix may not be empty");
  for (const a of prefixes) {
    const outer = prefixes.find((b) => b !== a && a.startsWith(b));
    if (outer !== undefined) throw new FlagError(`--consistent-cache-prefix "${a}" is inside "${outer}"`);
  }
  return prefixes;
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

/** --metrics-addr, e.g. http://127.0.0.1:9379; https serves with the client port's certificate. */
function parseMetricsAddr(value: string, haveTls: boolean): ProxyConfig["clientPort"]["metricsAddr"] {
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
