// The benchmark still works: a short run of every scenario against etcd,
// etcd's Go proxy and this proxy. It asserts that the numbers exist and that
// no request failed, never how fast anything was.
import { execFile } from "node:child_process";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const compiled = import.meta.url.endsWith(".js");

it("npm run bench --smoke measures every scenario on every target", { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "ecp-bench-"));
  try {
    const out = join(dir, "bench.json");
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        // The bench as this test runs: compiled (npm test) or as TypeScript.
        [
          ...(compiled ? [] : ["--import", "tsx"]),
          fileURLToPath(new URL(`../../bench/run.${compiled ? "js" : "ts"}`, import.meta.url)),
          "--smoke",
          `--out=${out}`,
        ],
        { timeout: 170_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      ),
    );
    assert.equal(code, 0, stderr);
    const report = JSON.parse(readFileSync(out, "utf8")) as {
      summary: Array<{
        scenario: string;
        target: string;
        rps: number;
        errors: number;
        rssMB: number;
        etcdCpuMsPerOp: number | null;
      }>;
    };
    const scenarios = new Set(report.summary.map((s) => s.scenario));
    for (const s of ["put", "range (linearizable)", "range (serializable, hot key)", "txn (put)"]) {
      assert.ok(scenarios.has(s), `scenario ${s}`);
    }
    assert.ok([...scenarios].some((s) => s.startsWith("watch fan-out")));
    assert.ok([...scenarios].some((s) => s.startsWith("lease keep-alive")));
    const list = report.summary.find((r) => r.target === "ecp" && r.scenario.startsWith("list"));
    assert.ok((list?.etcdCpuMsPerOp ?? 0) > 0, "the LIST scenario measures etcd's CPU under every target");
    const gateway = report.summary.filter((r) => r.scenario.startsWith("range-large, JSON gateway"));
    assert.deepEqual(
      gateway.map((r) => r.target).sort(),
      ["direct", "ecp"],
      "the JSON gateway's read runs on etcd and on this proxy; etcd's Go proxy has no gateway, and no row",
    );
    const loop = report.summary.filter((r) => r.scenario.startsWith("watch-large, closed loop"));
    assert.deepEqual(
      loop.map((r) => r.target).sort(),
      ["direct", "ecp", "go-proxy"],
      "the watch loop puts values through every target's watchers",
    );
    for (const row of loop)
      assert.ok(row.rps > 0 && row.errors === 0, `${row.target}: every value reached every watcher`);
    const idle = report.summary.filter((r) => r.target === "ecp" && r.scenario.startsWith("idle"));
    assert.deepEqual(
      idle.map((r) => r.scenario),
      ["idle, after warm-up", "idle, 1 s later"],
    );
    for (const row of idle) assert.ok(row.rssMB > 20, `${row.scenario}: the proxy's RSS was read`);
    for (const row of report.summary.filter((r) => r.target === "ecp" && !r.scenario.startsWith("idle"))) {
      assert.ok(row.rps > 0, `${row.scenario}: ecp did work`);
      assert.equal(row.errors, 0, `${row.scenario}: ecp had no errors`);
    }
    assert.ok(
      report.summary.some((r) => r.target === "go-proxy" && r.rps > 0),
      "etcd's Go proxy was measured",
    );
    assert.match(stdout, /\| ecp \| \d+ \| [\d.]+× \|/, "the Markdown table compares with the Go proxy");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
