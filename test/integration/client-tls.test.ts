// TLS toward clients: client certificates required and verified
// (--trusted-ca-file), revoked ones refused (--client-crl-file), and the
// TLS versions and cipher suites an operator allows.
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { buildConfig } from "../../src/config/config.js";
import type { RunningProxy } from "../../src/main.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { etcdctl } from "../helpers/etcdctl.js";
import { startTestProxy } from "../helpers/proxy.js";

/** Runs curl; resolves with its exit code and output (0 and the body on success). */
function curl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile("curl", ["-sS", "--max-time", "5", ...args], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr }),
    ),
  );
}

describe("TLS toward clients", () => {
  let pki: TestPki;
  let etcd: EtcdCluster;
  const running: RunningProxy[] = [];

  before(async () => {
    pki = makePki();
    etcd = await startEtcd(1);
  });

  after(async () => {
    for (const p of running) await p.close();
    await etcd?.stop();
    pki?.remove();
  });

  const start = async (args: string[]) => {
    const proxy = await startTestProxy(etcd.endpoints, [
      `--cert-file=${pki.server.cert}`,
      `--key-file=${pki.server.key}`,
      ...args,
    ]);
    running.push(proxy);
    return proxy;
  };

  it("--trusted-ca-file: client certificates are required and verified", async () => {
    const proxy = await start([`--trusted-ca-file=${pki.ca}`]);
    const endpoint = `https://${proxy.address}`;
    const withCert = [`--cacert=${pki.ca}`, `--cert=${pki.client.cert}`, `--key=${pki.client.key}`];
    const ok = await etcdctl(endpoint, [...withCert, "put", "mtls/k", "v"]);
    assert.equal(ok.code, 0, ok.stderr);
    const noCert = await etcdctl(endpoint, [`--cacert=${pki.ca}`, "--command-timeout=2s", "put", "mtls/k", "v"]);
    assert.notEqual(noCert.code, 0, "a client without a certificate is refused");

    const health = await curl([
      "--cacert",
      pki.ca,
      "--cert",
      pki.client.cert,
      "--key",
      pki.client.key,
      `${endpoint}/health`,
    ]);
    assert.equal(health.out, '{"health":"true","reason":""}');
    assert.notEqual((await curl(["--cacert", pki.ca, `${endpoint}/health`])).code, 0);
  });

  it("--client-crl-file: a revoked client certificate is refused, others still work", async () => {
    const withCn = ["--cert", pki.clientWithCn.cert, "--key", pki.clientWithCn.key];
    const control = await start([`--trusted-ca-file=${pki.ca}`]);
    const before = await curl(["--cacert", pki.ca, ...withCn, `https://${control.address}/health`]);
    assert.equal(before.code, 0, `without the CRL this certificate is accepted: ${before.out}`);
    const crl = pki.revoke(pki.clientWithCn.cert);
    const proxy = await start([`--trusted-ca-file=${pki.ca}`, `--client-crl-file=${crl}`]);
    const url = `https://${proxy.address}/health`;
    const good = await curl(["--cacert", pki.ca, "--cert", pki.client.cert, "--key", pki.client.key, url]);
    assert.equal(good.code, 0, good.out);
    const revoked = await curl([
      "--cacert",
      pki.ca,
      "--cert",
      pki.clientWithCn.cert,
      "--key",
      pki.clientWithCn.key,
      url,
    ]);
    assert.notEqual(revoked.code, 0, "the revoked certificate is refused");
  });

  it("--tls-min-version=TLS1.3 refuses TLS 1.2 clients", async () => {
    const proxy = await start(["--tls-min-version=TLS1.3"]);
    const url = `https://${proxy.address}/livez`;
    assert.equal((await curl(["--cacert", pki.ca, url])).code, 0);
    assert.notEqual((await curl(["--cacert", pki.ca, "--tls-max", "1.2", url])).code, 0);
  });

  it("--listen-cipher-suites allows only the named TLS 1.2 suites", async () => {
    const proxy = await start([
      "--listen-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "--tls-max-version=TLS1.2",
    ]);
    const url = `https://${proxy.address}/livez`;
    const allowed = await curl([
      "--cacert",
      pki.ca,
      "--tls-max",
      "1.2",
      "--ciphers",
      "ECDHE-ECDSA-AES128-GCM-SHA256",
      url,
    ]);
    assert.equal(allowed.code, 0, allowed.out);
    const other = await curl([
      "--cacert",
      pki.ca,
      "--tls-max",
      "1.2",
      "--ciphers",
      "ECDHE-ECDSA-AES256-GCM-SHA384",
      url,
    ]);
    assert.notEqual(other.code, 0);
  });

  it("inconsistent TLS flags are refused with etcd's checks", () => {
    const base = [`--cert-file=${pki.server.cert}`, `--key-file=${pki.server.key}`];
    assert.throws(() => buildConfig([...base, "--tls-min-version=TLS1.1"]), /invalid --tls-min-version "TLS1.1"/);
    assert.throws(
      () => buildConfig([...base, "--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"]),
      /greater than --tls-max-version/,
    );
    assert.throws(
      () =>
        buildConfig([
          ...base,
          "--tls-min-version=TLS1.3",
          "--listen-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ]),
      /cannot be used with TLS1\.3/,
    );
    assert.throws(
      () => buildConfig([...base, "--listen-cipher-suites=TLS_NOPE"]),
      /unsupported cipher suite "TLS_NOPE"/,
    );
    assert.throws(() => buildConfig([`--trusted-ca-file=${pki.ca}`]), /needs TLS on the client port/);
  });

  it("--auto-tls serves a self-signed certificate kept in --data-dir, and reuses it", async () => {
    const dataDir = join(pki.dir, "auto-tls-data");
    const first = await startTestProxy(etcd.endpoints, ["--auto-tls", `--data-dir=${dataDir}`]);
    running.push(first);
    const certFile = join(dataDir, "fixtures", "proxy", "cert.pem");
    const cert = readFileSync(certFile);
    assert.match(new X509Certificate(cert).subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
    assert.equal((await curl(["--cacert", certFile, `https://${first.address}/livez`])).out, "ok\n");
    const put = await etcdctl(`https://${first.address}`, [`--cacert=${certFile}`, "put", "auto/k", "v"]);
    assert.equal(put.code, 0, put.stderr);

    const second = await startTestProxy(etcd.endpoints, ["--auto-tls", `--data-dir=${dataDir}`]);
    running.push(second);
    assert.deepEqual(readFileSync(certFile), cert, "the certificate is reused, not made anew");
    assert.throws(() => buildConfig(["--auto-tls", "--self-signed-cert-validity=0"]), /at least 1/);
  });
});
