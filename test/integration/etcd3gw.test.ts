// OpenStack's etcd3gw, a client of etcd's JSON gateway that nobody here
// wrote, installed from Debian and used as its README shows: a lease past
// 2^53 sent as a JSON number, a key on it, keep-alive, a lock, a revoke.
// Through the proxy it must see what it sees against etcd. (Before JSON
// numbers were read exactly, its put answered "requested lease not found".)
//
// Lane-independent: npm test runs it in the fast lane only, since
// the JSON gateway is served the same way in both lanes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { ETCD_VERSION } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import { repoPath } from "../helpers/repo.js";

const script = repoPath("test", "clients", "etcd3gw-flow.py");

function flow(address: string, prefix: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) =>
    execFile("/usr/bin/python3", [script, address, prefix], { timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as Record<string, unknown>),
    ),
  );
}

describe(`etcd3gw through the gateway, etcd ${ETCD_VERSION}`, () => {
  const f = useProxy(1);

  it("its lease and lock flow behaves through the proxy as against etcd", async () => {
    const direct = await flow(f.etcd.members[0]!.endpoint, "gw-direct/");
    const proxied = await flow(f.proxy.address, "gw-proxy/");
    assert.deepEqual(proxied, { ...direct, keys: ["gw-proxy/k"] } as Record<string, unknown>);
    assert.deepEqual(direct.keys, ["gw-direct/k"]);
    assert.equal(proxied.acquired, true);
    assert.equal(proxied.refreshed, true);
  });
});
