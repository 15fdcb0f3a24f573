import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Admission, defaultHosts, hostnameOf, type RequestHead } from "../../src/server/edge/admission.js";
import { redactCommandLine } from "../../src/config/config.js";

const policy = (over: Partial<ConstructorParameters<typeof Admission>[0]> = {}) =>
  new Admission({ hosts: ["localhost", "proxy.example"], allowedOrigins: [], isPublicPath: (p) => p === "/", ...over });

const head = (over: Partial<RequestHead> = {}): RequestHead => ({
  method: "POST",
  url: "/v3/kv/put",
  host: "proxy.example:2379",
  origin: undefined,
  fetchSite: undefined,
  ...over,
});

const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const dnsName = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
const port = fc.integer({ min: 1, max: 65535 });

describe("admission: Host", () => {
  it("reads the host name out of Host and :authority forms", () => {
    assert.equal(hostnameOf("Proxy.Example:2379"), "proxy.example");
    assert.equal(hostnameOf("[::1]:2379"), "::1");
    assert.equal(hostnameOf("localhost."), "localhost");
    assert.equal(hostnameOf("10.0.0.1"), "10.0.0.1");
  });

  it("refuses every DNS name it does not know, with etcd's 421 naming the flag that admits it", () => {
    const admission = policy();
    fc.assert(
      fc.property(dnsName, port, (name, p) => {
        fc.pre(name !== "localhost" && name !== "proxy.example");
        const refusal = admission.check(head({ host: `${name}:${p}` }));
        assert.equal(refusal?.status, 421);
        assert.ok(refusal.body.includes(`--host-whitelist "${name}"`));
      }),
    );
  });

  it("admits its names in any case and port, and every IP literal, since no rebinding can use one", () => {
    const admission = policy();
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV6(), port, fc.boolean(), (v4, v6, p, upper) => {
        const name = upper ? "PROXY.EXAMPLE" : "proxy.example";
        for (const host of [`${v4}:${p}`, v4, `[${v6}]:${p}`, `${name}:${p}`, `localhost.:${p}`]) {
          assert.equal(admission.check(head({ host })), undefined, host);
        }
      }),
    );
  });

  it("admits a host no browser could send, or none", () => {
    const admission = policy();
    assert.equal(admission.check(head({ host: "#initially=[127.0.0.1:2379]" })), undefined);
    assert.equal(admission.check(head({ host: undefined })), undefined);
    assert.equal(admission.check(head({ host: "" })), undefined);
  });

  it("a wildcard covers one label; * covers all", () => {
    const wild = policy({ hosts: ["*.lb.example"] });
    assert.equal(wild.check(head({ host: "a.lb.example" })), undefined);
    assert.equal(wild.check(head({ host: "lb.example" }))?.status, 421);
    assert.equal(wild.check(head({ host: "a.b.lb.example" }))?.status, 421);
    assert.equal(wild.check(head({ host: "a.lb.example.evil" }))?.status, 421);
    assert.equal(policy({ hosts: ["*"] }).check(head({ host: "anything.example" })), undefined);
  });

  it("defaults to the proxy's own names", () => {
    const hosts = defaultHosts({
      listenHost: "0.0.0.0",
      advertiseClientUrl: "https://Proxy.Corp.example:2379",
      machineName: "db1",
      certificate: undefined,
    });
    assert.deepEqual(hosts.sort(), ["127.0.0.1", "::1", "db1", "localhost", "proxy.corp.example"]);
    assert.ok(
      defaultHosts({
        listenHost: "gw.example",
        advertiseClientUrl: "h.example:1",
        machineName: "m",
        certificate: undefined,
      }).includes("h.example"),
    );
  });
});

describe("admission: pages of other sites", () => {
  it("serves clients that send no Origin and no Sec-Fetch-Site, whatever they send", () => {
    assert.equal(policy().check(head()), undefined);
  });

  it("refuses any Origin that is not the proxy's own or allowed, before anything else", () => {
    const admission = policy();
    fc.assert(
      fc.property(dnsName, port, fc.constantFrom("http", "https"), (name, p, scheme) => {
        fc.pre(name !== "proxy.example");
        const refusal = admission.check(head({ origin: `${scheme}://${name}:${p}` }));
        assert.equal(refusal?.status, 403);
      }),
    );
    assert.equal(admission.check(head({ origin: "null" }))?.status, 403);
    assert.equal(admission.check(head({ origin: "http://proxy.example:2380" }))?.status, 403, "another port");
  });

  it("serves the proxy's own pages, behind a TLS front too, and the allowed origins", () => {
    const admission = policy({ allowedOrigins: ["https://dash.example"] });
    assert.equal(admission.check(head({ origin: "http://proxy.example:2379" })), undefined);
    assert.equal(admission.check(head({ host: "proxy.example", origin: "https://proxy.example" })), undefined);
    assert.equal(admission.check(head({ origin: "https://DASH.example", fetchSite: "cross-site" })), undefined);
    assert.equal(policy({ allowedOrigins: ["*"] }).check(head({ origin: "https://x.example" })), undefined);
  });

  it("refuses a cross-site or same-site request without Origin, except GET and HEAD of public paths", () => {
    const admission = policy();
    for (const fetchSite of ["cross-site", "same-site"]) {
      assert.equal(admission.check(head({ fetchSite }))?.status, 403);
      assert.equal(admission.check(head({ fetchSite, method: "GET", url: "/metrics" }))?.status, 403);
      assert.equal(admission.check(head({ fetchSite, method: "GET", url: "/?from=link" })), undefined);
      assert.equal(admission.check(head({ fetchSite, method: "HEAD", url: "/" })), undefined);
    }
    assert.equal(admission.check(head({ fetchSite: "same-origin" })), undefined);
    assert.equal(admission.check(head({ fetchSite: "none" })), undefined);
  });
});

describe("the command line, as /debug/pprof/cmdline shows it", () => {
  it("hides --password and the password of --user name:password, in both spellings", () => {
    assert.deepEqual(
      redactCommandLine([
        "node",
        "start",
        "--password=s3cret",
        "--user",
        "root:pw",
        "--endpoints=a:1",
        "--password",
        "x",
      ]),
      [
        "node",
        "start",
        "--password=[redacted]",
        "--user",
        "root:[redacted]",
        "--endpoints=a:1",
        "--password",
        "[redacted]",
      ],
    );
    assert.deepEqual(redactCommandLine(["--user=root", "--user=a:b:c"]), ["--user=root", "--user=a:[redacted]"]);
  });

  it("never lets a password through, wherever it stands", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("--debug", "--endpoints=x:1", "start")),
        fc.string({ minLength: 3 }),
        (others, secret) => {
          fc.pre(!secret.includes(":") && !secret.includes("redacted"));
          const argv = [...others, `--password=${secret}`, ...others, "--user", `u:${secret}`, "--password", secret];
          const shown = redactCommandLine(argv).join(" ");
          assert.ok(!shown.includes(secret) || others.some((o) => o.includes(secret)), shown);
        },
      ),
    );
  });
});
