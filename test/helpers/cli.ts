import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { freePort } from "./ports.js";
import { PROXY_BIN as bin } from "./repo.js";

/**
 * Starts the built `etcd-connect-proxy start` as its own process and waits
 * for its startup line; in the lane the suite runs in (PROXY_LANE), unless
 * the test names one.
 */
export async function startCli(endpoints: string, extraArgs: string[] = []) {
  const address = `127.0.0.1:${await freePort()}`;
  const lane = extraArgs.some((a) => a.startsWith("--grpc-lane"))
    ? []
    : [`--grpc-lane=${process.env.PROXY_LANE ?? "native"}`];
  const child = spawn(
    process.execPath,
    [bin, "start", `--endpoints=${endpoints}`, `--listen-addr=${address}`, ...lane, ...extraArgs],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const logLines = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitUntil(
    () => logLines().some((l) => l.msg === "started gRPC proxy"),
    () => `no startup line:\n${out}`,
  );
  return { child, address, exited, output: () => out, logLines };
}

/** Polls `condition` every 50 ms for up to 15 s; fails with `describe()` otherwise. */
export async function waitUntil(condition: () => boolean, describe: () => string): Promise<void> {
  const until = Date.now() + 15_000;
  while (!condition()) {
    assert.ok(Date.now() < until, describe());
    await new Promise((r) => setTimeout(r, 50));
  }
}
