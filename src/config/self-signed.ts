import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";

/**
 * The certificate --auto-tls serves: made once with openssl in
 * `<data-dir>/fixtures/proxy` (where etcd keeps its own), then reused. Node
 * has no API to create certificates, and openssl is on every Debian machine.
 */
export function selfSignedCertificate(
  dataDir: string,
  listenHost: string,
  validityYears: number,
): { certFile: string; keyFile: string } {
  const dir = join(dataDir, "fixtures", "proxy");
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const wildcard = listenHost === "0.0.0.0" || listenHost === "::" || listenHost === "";
  const names = wildcard
    ? ["IP:127.0.0.1", "DNS:localhost"]
    : [isIP(listenHost) ? `IP:${listenHost}` : `DNS:${listenHost}`];
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        String(Math.round(validityYears * 365)),
        "-subj",
        "/O=etcd-connect-proxy",
        "-addext",
        `subjectAltName=${names.join(",")}`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "openssl is not installed" : String(err);
    throw new Error(`--auto-tls could not create a certificate in ${dir}: ${reason}`);
  }
  return { certFile, keyFile };
}
