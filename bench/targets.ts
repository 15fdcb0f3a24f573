import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/package-root.js";
import { startEtcd, type EtcdCluster } from "../test/helpers/etcd.js";
import { freePort } from "../test/helpers/ports.js";
import { proxyEnvironment } from "./proc.js";

/**
 * `ecp-base`: this proxy built from another checkout (BENCH_BASE, e.g. a
 * `git worktree` of an older commit, built), to measure a change side by
 * side with what it changes, in one run.
 */
function baseCheckout(): string {
  const dir = process.env.BENCH_BASE;
  if (!dir) throw new Error("the ecp-base target needs BENCH_BASE: a built checkout of this proxy");
  return dir;
}

/**
 * A target name ending so runs that proxy with --experimental-leasing-prefix
 * (`ecp-leasing`, `go-proxy-3.5-leasing`), each under its own prefix: on one
 * etcd, proxies sharing a prefix would take the hot key from each other.
 */
const LEASING_SUFFIX = "-leasing";
const leasingArgs = (name: string) =>
  name.endsWith(LEASING_SUFFIX) ? [`--experimental-leasing-prefix=/leasing/${name}/`] : [];

/**
 * `ecp-consistent`: this proxy with --consistent-cache-prefix over the keys
 * the large Range scenarios read (not the rest of bench/, whose snapshot
 * and put-large megabytes would not fit the replica's budget).
 */
export const CONSISTENT_PREFIX = "bench/large/";
const consistentArgs = (name: string) =>
  name.endsWith("-consistent") ? [`--consistent-cache-prefix=${CONSISTENT_PREFIX}`] : [];

/**
 * The `etcd` binary whose `grpc-proxy start` a Go-proxy target runs:
 * `go-proxy` is the etcd on PATH (the one the lab's etcd runs too);
 * `go-proxy-3.4` is Debian's etcd 3.4; `go-proxy-3.5` is the etcd 3.5 that
 * scripts/ensure-etcd35.sh fetched (ETCD35_BIN).
 */
function goProxyBinary(name: string): string {
  name = name.replace(LEASING_SUFFIX, "");
  if (name === "go-proxy") return "etcd";
  if (name === "go-proxy-3.4") return "/usr/bin/etcd";
  return join(process.env.ETCD35_BIN ?? join(PACKAGE_ROOT, ".cache", "etcd-3.5", "root", "usr", "bin"), "etcd");
}

/** Something the load generator talks to: etcd itself, or a proxy in front of it. */
export interface Target {
  name: string;
  address: string;
  /** The proxy's process, whose CPU and memory are measured; etcd's for "direct". */
  pid: number;
}

export interface Lab {
  etcd: EtcdCluster;
  targets: Target[];
  stop(): Promise<void>;
}

async function waitListening(address: string, child: ChildProcess, what: string): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://${address}/health`);
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`${what} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A single-member etcd on loopback with, in front of it, etcd's own Go proxy
 * and this proxy (native lane, and the Connect lane for comparison).
 */
export async function startLab(names: string[]): Promise<Lab> {
  const etcd = await startEtcd(1);
  const children: ChildProcess[] = [];
  const lab: Lab = {
    etcd,
    targets: [],
    async stop() {
      // SIGTERM lets our proxy exit cleanly (and write a --cpu-prof profile).
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null) return resolve();
              const force = setTimeout(() => c.kill("SIGKILL"), 5000);
              c.once("exit", () => {
                clearTimeout(force);
                resolve();
              });
              c.kill("SIGTERM");
            }),
        ),
      );
      await etcd.stop();
    },
  };
  try {
    for (const name of names) lab.targets.push(await startTarget(name, etcd, children));
  } catch (err) {
    await lab.stop(); // a target that cannot start leaves no process of the others behind
    throw err;
  }
  return lab;
}

/** Starts one target in front of `etcd`; the processes it starts join `children`. */
async function startTarget(name: string, etcd: EtcdCluster, children: ChildProcess[]): Promise<Target> {
  if (name === "direct") return { name, address: etcd.endpoints, pid: etcd.members[0]!.process!.pid! };
  const address = `127.0.0.1:${await freePort()}`;
  const child = name.startsWith("go-proxy")
    ? spawn(
        goProxyBinary(name),
        // etcd 3.5's proxy dials its own advertised address at start (for
        // /proxy/health) and exits when nothing answers there: advertise
        // the address it listens on (its default is 127.0.0.1:23790).
        [
          "grpc-proxy",
          "start",
          `--endpoints=${etcd.endpoints}`,
          `--listen-addr=${address}`,
          `--advertise-client-url=${address}`,
          ...leasingArgs(name),
        ],
        { stdio: "ignore" },
      )
    : spawn(
        process.execPath,
        [
          ...(process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : []),
          ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(" ") : []),
          join(name === "ecp-base" ? baseCheckout() : PACKAGE_ROOT, "bin", "etcd-connect-proxy.js"),
          "start",
          `--endpoints=${etcd.endpoints}`,
          `--listen-addr=${address}`,
          "--log-level=warn",
          `--grpc-lane=${name === "ecp-connect" ? "connect" : "native"}`,
          ...leasingArgs(name),
          ...consistentArgs(name),
          ...(process.env.BENCH_PROXY_ARGS ? process.env.BENCH_PROXY_ARGS.split(" ") : []),
        ],
        { stdio: ["ignore", process.env.BENCH_STDOUT ? "inherit" : "ignore", "inherit"], env: proxyEnvironment() },
      );
  children.push(child);
  await waitListening(address, child, name);
  return { name, address, pid: child.pid! };
}
