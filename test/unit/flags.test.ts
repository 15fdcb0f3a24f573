import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildConfig, loadConfig, parseConfig } from "../../src/config/config.js";
import { PROXY_FLAGS } from "../../src/config/proxy-flags.js";
import { FlagError, formatFlagHelp, parseDuration, parseFlags } from "../../src/config/flags.js";

describe("parseDuration", () => {
  it("reads Go durations", () => {
    assert.equal(parseDuration("0"), 0);
    assert.equal(parseDuration("5s"), 5000);
    assert.equal(parseDuration("2h"), 7_200_000);
    assert.equal(parseDuration("1m30s"), 90_000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.equal(parseDuration("250ms"), 250);
  });
  it("rejects what Go rejects", () => {
    for (const bad of ["", "5", "s", "5x", "-1s", "1s 2s"]) assert.throws(() => parseDuration(bad), FlagError, bad);
  });
});

describe("parseFlags", () => {
  const specs = [
    { name: "name", type: "string", default: "x", help: "" },
    { name: "on", type: "bool", default: "false", help: "" },
    { name: "n", type: "uint", default: "3", help: "" },
    { name: "list", type: "list", default: "a,b", help: "" },
  ] as const;

  it("takes --k=v, --k v and bare booleans, and remembers what was given", () => {
    const p = parseFlags(specs, ["--name=y", "--n", "7", "--on", "--list=c"]);
    assert.equal(p.values.get("name"), "y");
    assert.equal(p.values.get("n"), 7);
    assert.equal(p.values.get("on"), true);
    assert.deepEqual(p.values.get("list"), ["c"]);
    assert.deepEqual([...p.given].sort(), ["list", "n", "name", "on"]);
  });
  it("accepts --bool=false like pflag", () => {
    assert.equal(parseFlags(specs, ["--on=false"]).values.get("on"), false);
  });
  it("keeps defaults", () => {
    const p = parseFlags(specs, []);
    assert.equal(p.values.get("n"), 3);
    assert.deepEqual(p.values.get("list"), ["a", "b"]);
    assert.equal(p.given.size, 0);
  });
  it("rejects unknown flags, missing values and bad numbers with one clear message", () => {
    assert.throws(() => parseFlags(specs, ["--nope"]), /unknown flag: --nope/);
    assert.throws(() => parseFlags(specs, ["--name"]), /flag needs an argument: --name/);
    assert.throws(() => parseFlags(specs, ["--n=-1"]), /invalid value "-1" for --n/);
    assert.throws(() => parseFlags(specs, ["--on=maybe"]), /expected true or false/);
    assert.throws(() => parseFlags(specs, ["-n", "1"]), /unknown shorthand flag/);
  });
});

describe("etcd's flags", () => {
  it("has every flag of etcd grpc-proxy start, with etcd's defaults", () => {
    const byName = new Map<string, string>(PROXY_FLAGS.map((f) => [f.name, f.default]));
    const etcd: Record<string, string> = {
      "listen-addr": "127.0.0.1:23790",
      endpoints: "127.0.0.1:2379",
      "advertise-client-url": "127.0.0.1:23790",
      "resolver-ttl": "0",
      "data-dir": "default.proxy",
      "max-send-bytes": "1572864",
      "max-recv-bytes": "2147483647",
      "dial-keepalive-timeout": "20s",
      "grpc-keepalive-min-time": "5s",
      "grpc-keepalive-interval": "2h",
      "grpc-keepalive-timeout": "20s",
      "tls-min-version": "TLS1.2",
      "self-signed-cert-validity": "1",
    };
    for (const [name, def] of Object.entries(etcd)) assert.equal(byName.get(name), def, name);
    // The one default that is deliberately not etcd's (2^32-1): a bound on what one connection opens.
    assert.equal(byName.get("max-concurrent-streams"), "1000");
    for (const name of [
      "endpoints-auto-sync-interval",
      "discovery-srv",
      "discovery-srv-name",
      "insecure-discovery",
      "metrics-addr",
      "resolver-prefix",
      "namespace",
      "enable-pprof",
      "dial-keepalive-time",
      "permit-without-stream",
      "cert",
      "key",
      "cacert",
      "insecure-skip-tls-verify",
      "cert-file",
      "key-file",
      "trusted-ca-file",
      "client-crl-file",
      "auto-tls",
      "listen-cipher-suites",
      "tls-max-version",
      "experimental-serializable-ordering",
      "experimental-leasing-prefix",
      "experimental-enable-grpc-logging",
      "debug",
    ]) {
      assert.ok(byName.has(name), name);
    }
  });

  it("help lists every flag with its default", () => {
    const help = formatFlagHelp(PROXY_FLAGS);
    for (const f of PROXY_FLAGS) assert.match(help, new RegExp(`--${f.name}\\b`));
    assert.match(help, /--listen-addr string\s+.*\(default "127\.0\.0\.1:23790"\)/);
  });
});

describe("buildConfig", () => {
  it("normalizes endpoints with and without a scheme", () => {
    const c = buildConfig(["--endpoints=127.0.0.1:2379,http://localhost:22379"]);
    assert.deepEqual(c.etcd.endpoints, ["http://127.0.0.1:2379", "http://localhost:22379"]);
    assert.deepEqual(c.clientPort.listen, { host: "127.0.0.1", port: 23790 });
    assert.equal(c.clientPort.advertiseClientUrl, undefined, "follows the listen address unless given");
  });
  it("keeps an explicitly empty advertise URL (MemberList then goes to etcd)", () => {
    assert.equal(buildConfig(["--advertise-client-url="]).clientPort.advertiseClientUrl, "");
  });
  it("reads the leasing prefix (empty: no leasing)", () => {
    assert.equal(buildConfig(["--experimental-leasing-prefix=l/"]).leasing.prefix, "l/");
    assert.equal(buildConfig([]).leasing.prefix, "");
  });
  it("reads the endpoint sources: DNS SRV discovery and member auto-sync", () => {
    const c = buildConfig([
      "--discovery-srv=example.com",
      "--discovery-srv-name=blue",
      "--insecure-discovery",
      "--endpoints-auto-sync-interval=30s",
    ]);
    assert.deepEqual(c.etcd.discovery, { domain: "example.com", serviceName: "blue", insecure: true });
    assert.equal(c.etcd.autoSyncMs, 30_000);
    assert.equal(buildConfig([]).etcd.discovery, undefined);
    assert.equal(buildConfig(["--experimental-enable-grpc-logging"]).log.payloads, true);
    assert.equal(buildConfig(["--experimental-serializable-ordering"]).etcd.serializableOrdering, true);
    assert.equal(buildConfig(["--enable-pprof"]).clientPort.pprof, true);
  });
  it("reads --namespace and the registration flags", () => {
    const c = buildConfig(["--namespace=app/", "--resolver-prefix=p", "--resolver-ttl=5"]);
    assert.equal(c.namespace, "app/");
    assert.deepEqual(c.registration, { prefix: "p", ttlSeconds: 5 });
  });
  it("reads the proxy's own identity from --user, --password or --password-file", () => {
    assert.deepEqual(buildConfig(["--user=proxy:pw"]).etcd.identity, { name: "proxy", password: "pw" });
    assert.deepEqual(buildConfig(["--user=proxy", "--password=pw:x"]).etcd.identity, {
      name: "proxy",
      password: "pw:x",
    });
    const file = join(mkdtempSync(join(tmpdir(), "ecp-")), "pw");
    writeFileSync(file, "from-file\n");
    assert.deepEqual(buildConfig(["--user=proxy", `--password-file=${file}`]).etcd.identity, {
      name: "proxy",
      password: "from-file",
    });
    assert.equal(buildConfig([]).etcd.identity, undefined);
    assert.throws(() => buildConfig(["--user=proxy"]), /exactly one password/);
    assert.throws(() => buildConfig(["--user=proxy:a", "--password=b"]), /exactly one password/);
    assert.throws(() => buildConfig(["--password=b"]), /need --user/);
  });
  it("reads no file while parsing: certificates, keys and the password file are read when the proxy starts", () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "ecp-")), "data");
    const missing = ["--cert-file=/nonexistent.pem", "--key-file=/nonexistent.key", "--cacert=/nonexistent-ca.pem"];
    const settings = parseConfig([...missing, "--user=proxy", "--password-file=/nonexistent-pw"]);
    assert.deepEqual(settings.etcd.identity, { name: "proxy", passwordFile: "/nonexistent-pw" });
    assert.equal(settings.clientPort.tls?.certFile, "/nonexistent.pem");
    assert.throws(() => loadConfig(settings), /cannot read --cacert "\/nonexistent-ca.pem"/);
    assert.throws(() => loadConfig(parseConfig(missing.slice(0, 2))), /cannot read --cert-file/);
    const autoTls = parseConfig(["--auto-tls", `--data-dir=${dataDir}`]);
    assert.equal(existsSync(dataDir), false, "--auto-tls makes its certificate at start, not while parsing");
    assert.ok(loadConfig(autoTls).clientPort.tls?.cert.toString().includes("BEGIN CERTIFICATE"));
    assert.equal(existsSync(join(dataDir, "fixtures", "proxy", "cert.pem")), true);
  });
  it("applies etcd's registration checks", () => {
    assert.throws(() => buildConfig(["--resolver-prefix=p"]), /invalid resolver-ttl/);
    assert.throws(() => buildConfig(["--resolver-ttl=5"]), /invalid resolver-prefix/);
  });
  it("rejects bad values with one line", () => {
    assert.throws(() => buildConfig(["--listen-addr=nope"]), /invalid --listen-addr "nope"/);
    assert.throws(() => buildConfig(["--endpoints=ftp://x:1"]), /unsupported endpoint scheme/);
    assert.throws(() => buildConfig(["--endpoints=127.0.0.1"]), /has no port/);
    assert.throws(() => buildConfig(["--endpoints="]), /at least one etcd endpoint/);
    assert.throws(() => buildConfig(["--cert-file=a.pem"]), /must be given together/);
    assert.throws(
      () => buildConfig(["--cert-file=/nonexistent.pem", "--key-file=/nonexistent.key"]),
      /cannot read --cert-file/,
    );
    assert.throws(() => buildConfig(["--log-level=loud"]), /invalid --log-level/);
    assert.throws(() => buildConfig(["--max-concurrent-streams=0"]), /between 1 and/);
    assert.throws(() => buildConfig(["extra"]), /unexpected argument "extra"/);
  });
  it("--debug forces debug logging", () => {
    assert.equal(buildConfig(["--debug"]).log.level, "debug");
  });
});
