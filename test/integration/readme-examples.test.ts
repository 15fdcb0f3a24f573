// The README's curl examples, run exactly as written (only the address is
// the test proxy's): every one must succeed and answer JSON. Streaming
// examples get a moment to answer, then are stopped.
//
// Lane-independent: npm test runs it in the fast lane only, since
// curl's requests are served the same way in both lanes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { useProxy } from "../helpers/fixture.js";
import { repoPath } from "../helpers/repo.js";

/** Every `curl` command in the README's shell blocks, continuation lines joined. */
function readmeCurls(): string[] {
  const readme = readFileSync(repoPath("README.md"), "utf8");
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, ""));
  return blocks.flatMap((b) => b.split("\n")).filter((line) => line.startsWith("curl "));
}

function run(command: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) =>
    execFile("bash", ["-c", command], { timeout: 5000 }, (err, stdout) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
    ),
  );
}

describe("README curl examples", () => {
  const f = useProxy(1);
  const curls = readmeCurls();

  it("there are examples of every style", () => {
    for (const style of ["etcdserverpb.KV/Put", "/v3/kv/range", "/v3/watch", "etcdproxy.v1.WatchService/Watch"]) {
      assert.ok(
        curls.some((c) => c.includes(style)),
        style,
      );
    }
  });

  it("each runs as written and answers JSON", async () => {
    // The token example needs a user; with auth off etcd ignores the header.
    const env = "TOKEN=none; ";
    for (const example of curls) {
      const command = example.replaceAll("127.0.0.1:23790", f.proxy.address);
      const streaming = /curl -s?N /.test(example);
      const { code, stdout } = await run(env + (streaming ? `timeout 1 ${command}; true` : command));
      assert.equal(code, 0, `${example}: exit ${code}, ${stdout.slice(0, 200)}`);
      const text = stdout.trim();
      assert.ok(text.length > 0, `${example}: an answer`);
      if (streaming) assert.match(text, /"created":\s*true/, `${example}: the watch was created`);
      else JSON.parse(text);
    }
  });
});
