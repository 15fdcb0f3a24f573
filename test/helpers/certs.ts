import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A throw-away PKI made with openssl: a CA and certificates it signed. */
export interface TestPki {
  dir: string;
  ca: string;
  /** For etcd's client port: SAN IP:127.0.0.1. */
  server: { cert: string; key: string };
  /** A client certificate with no Common Name, as the proxy needs. */
  client: { cert: string; key: string };
  /** A client certificate whose Common Name is "root". */
  clientWithCn: { cert: string; key: string };
  /** A second CA that signed nothing above. */
  otherCa: string;
  /** Revokes a certificate this CA signed; returns the path of the new CRL. */
  revoke(cert: string): string;
  remove(): void;
}

const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "ecp-pki-"));
  const p = (name: string) => join(dir, name);
  const selfSigned = (name: string, subject: string) =>
    openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.pem`),
      "-days",
      "1",
      "-subj",
      subject,
    ]);
  const signed = (name: string, subject: string, extensions: string) => {
    writeFileSync(p(`${name}.ext`), extensions);
    openssl(["req", "-new", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", subject]);
    openssl([
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p("ca.pem"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-out",
      p(`${name}.pem`),
      "-days",
      "1",
      "-extfile",
      p(`${name}.ext`),
    ]);
    return { cert: p(`${name}.pem`), key: p(`${name}.key`) };
  };
  selfSigned("ca", "/CN=etcd-connect-proxy test CA");
  selfSigned("other-ca", "/CN=another CA");
  return {
    dir,
    ca: p("ca.pem"),
    otherCa: p("other-ca.pem"),
    // DNS names for SRV discovery tests: targets are "localhost", validation is against the domain.
    server: signed(
      "server",
      "/CN=etcd",
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:srv.test\nextendedKeyUsage=serverAuth\n",
    ),
    client: signed("client", "/O=etcd-connect-proxy", "extendedKeyUsage=clientAuth\n"),
    clientWithCn: signed("client-cn", "/CN=root", "extendedKeyUsage=clientAuth\n"),
    revoke(cert: string) {
      // `openssl ca` keeps its state in an index file named by a config.
      writeFileSync(p("index.txt"), "", { flag: "a" });
      writeFileSync(p("crlnumber"), "01\n", { flag: "wx" as never });
      writeFileSync(
        p("ca.cnf"),
        `[ca]\ndefault_ca=test\n[test]\ndatabase=${p("index.txt")}\ncrlnumber=${p("crlnumber")}\n` +
          `default_md=sha256\ndefault_crl_days=1\nprivate_key=${p("ca.key")}\ncertificate=${p("ca.pem")}\n`,
      );
      openssl(["ca", "-config", p("ca.cnf"), "-revoke", cert]);
      openssl(["ca", "-config", p("ca.cnf"), "-gencrl", "-out", p("crl.pem")]);
      return p("crl.pem");
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
