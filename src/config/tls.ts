import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { UpstreamTls } from "../upstream/h2-client.js";
import { FlagError, type ParsedFlags } from "./flags.js";
import { reader } from "./proxy-flags.js";
import { selfSignedCertificate } from "./self-signed.js";

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

/** TLS on the client port as the flags name it: files not yet read. */
export interface ServerTlsFiles {
  /** Undefined with --auto-tls: a self-signed pair is made (or reused) at start. */
  certFile: string | undefined;
  keyFile: string | undefined;
  autoTls: { dataDir: string; listenHost: string; validityYears: number } | undefined;
  caFile: string | undefined;
  crlFile: string | undefined;
  ciphers: string | undefined;
  minVersion: ServerTls["minVersion"];
  maxVersion: ServerTls["maxVersion"];
}

/** TLS toward etcd as the flags name it: --cert, --key, --cacert, --insecure-skip-tls-verify. */
export interface UpstreamTlsFiles {
  certFile: string | undefined;
  keyFile: string | undefined;
  caFile: string | undefined;
  rejectUnauthorized: boolean;
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

/** TLS for the client port from --cert-file, --key-file, --auto-tls and the flags that refine them, with etcd's checks. */
export function parseServerTls(parsed: ParsedFlags, listenHost: string): ServerTlsFiles | undefined {
  const { str, num, bool, list, given } = reader(parsed);
  const certFile = str("cert-file");
  const keyFile = str("key-file");
  if ((certFile === "") !== (keyFile === "")) throw new FlagError("--cert-file and --key-file must be given together");
  let autoTls: ServerTlsFiles["autoTls"];
  if (!certFile && bool("auto-tls")) {
    const validityYears = num("self-signed-cert-validity");
    if (validityYears < 1) throw new FlagError("--self-signed-cert-validity must be at least 1 (year) with --auto-tls");
    autoTls = { dataDir: str("data-dir"), listenHost, validityYears };
  }
  const refinements = [
    "trusted-ca-file",
    "client-crl-file",
    "listen-cipher-suites",
    "tls-min-version",
    "tls-max-version",
  ] as const;
  if (!certFile && !autoTls) {
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
  return {
    certFile: certFile || undefined,
    keyFile: keyFile || undefined,
    autoTls,
    caFile: str("trusted-ca-file") || undefined,
    crlFile: str("client-crl-file") || undefined,
    ciphers: ciphers.length > 0 ? ciphers.join(":") : undefined,
    minVersion,
    maxVersion,
  };
}

/** Reads the client port's certificate files, making the --auto-tls pair first if asked. */
export function loadServerTls(files: ServerTlsFiles): ServerTls {
  let { certFile, keyFile } = files;
  if (files.autoTls) {
    const { dataDir, listenHost, validityYears } = files.autoTls;
    try {
      ({ certFile, keyFile } = selfSignedCertificate(dataDir, listenHost, validityYears));
    } catch (err) {
      throw new FlagError((err as Error).message);
    }
  }
  const tls: ServerTls = {
    cert: readPem(certFile!, "cert-file"),
    key: readPem(keyFile!, "key-file"),
    minVersion: files.minVersion,
  };
  if (files.maxVersion) tls.maxVersion = files.maxVersion;
  if (files.ciphers) tls.ciphers = files.ciphers;
  if (files.caFile) tls.ca = readPem(files.caFile, "trusted-ca-file");
  if (files.crlFile) tls.crl = readPem(files.crlFile, "client-crl-file");
  return tls;
}

/** TLS toward etcd from --cert, --key, --cacert and --insecure-skip-tls-verify; undefined when none is given. */
export function parseUpstreamTls(parsed: ParsedFlags): UpstreamTlsFiles | undefined {
  const { str, bool } = reader(parsed);
  const [certFile, keyFile, caFile] = [str("cert"), str("key"), str("cacert")];
  const insecure = bool("insecure-skip-tls-verify");
  if (!certFile && !keyFile && !caFile && !insecure) return undefined;
  if ((certFile === "") !== (keyFile === "")) throw new FlagError("--cert and --key must be given together");
  return {
    certFile: certFile || undefined,
    keyFile: keyFile || undefined,
    caFile: caFile || undefined,
    rejectUnauthorized: !insecure,
  };
}

/**
 * Reads the files of TLS toward etcd. As in etcd, the client certificate
 * must not carry a Common Name: etcd would authenticate every proxied
 * request as that CN's user, whoever the client is.
 */
export function loadUpstreamTls(files: UpstreamTlsFiles): UpstreamTls {
  const tls: UpstreamTls = { rejectUnauthorized: files.rejectUnauthorized };
  if (files.caFile) tls.ca = readPem(files.caFile, "cacert");
  if (files.certFile && files.keyFile) {
    tls.cert = readPem(files.certFile, "cert");
    tls.key = readPem(files.keyFile, "key");
    let commonName: string | undefined;
    try {
      commonName = /^CN=(.*)$/m.exec(new X509Certificate(tls.cert).subject)?.[1];
    } catch (err) {
      throw new FlagError(`--cert "${files.certFile}" is not a PEM certificate: ${(err as Error).message}`);
    }
    if (commonName) {
      throw new FlagError(
        `--cert "${files.certFile}" has a non-empty Common Name (${commonName}); etcd would authenticate every proxied request as that user, so the proxy's client certificate must have none`,
      );
    }
  }
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
