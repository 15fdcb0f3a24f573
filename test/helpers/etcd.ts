import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";

/** One etcd process of a test cluster. */
export interface EtcdMember {
  name: string;
  /** host:port, as etcdctl and the proxy's --endpoints take it. */
  endpoint: string;
  clientUrl: string;
  dataDir: string;
  logFile: string;
  process: ChildProcess | undefined;
  args: string[];
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Comma-separated host:port list for --endpoints. */
  endpoints: string;
  /** SIGKILLs a member and waits for its exit. */
  kill(member: EtcdMember): Promise<void>;
  /** Restarts a killed member on its old ports and data. */
  restart(member: EtcdMember): Promise<void>;
  /** Adds a member (etcd's MemberAdd, then the process, joining the running cluster); a learner if asked. */
  add(options?: { learner?: boolean }): Promise<EtcdMember>;
  /** Removes a member from the cluster (MemberRemove through another member), then stops its process. */
  remove(member: EtcdMember): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The version of the etcd on PATH, which every test cluster runs: npm test
 * runs the integration suite once with etcd 3.5 first on PATH, once with 3.4.
 */
export const ETCD_VERSION = /etcd Version: (\S+)/.exec(execFileSync("etcd", ["--version"], { encoding: "utf8" }))![1]!;
/** The release line, "3.4" or "3.5", for the few answers that differ between them. */
export const ETCD_LINE = ETCD_VERSION.split(".").slice(0, 2).join(".");
/** Whether this etcd answers a progress request only after the events it owes (3.4.25 and 3.5.8 on; etcd issue 15220). */
export const ETCD_ORDERS_PROGRESS = (() => {
  const [, minor = 0, patch = 0] = ETCD_VERSION.split(".").map(Number);
  return minor > 5 || (minor === 5 && patch >= 8) || (minor === 4 && patch >= 25);
})();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a real etcd cluster of `size` members on free loopback ports, with
 * temporary data directories, and waits until it has a leader. Elections are
 * tuned fast so failover tests finish quickly.
 */
export interface EtcdTls {
  ca: string;
  server: { cert: string; key: string };
  /** The client certificate the harness itself uses for health checks. */
  client: { cert: string; key: string };
}

export async function startEtcd(size = 1, tls?: EtcdTls, extraArgs: string[] = []): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), "ecp-etcd-"));
  const token = `t${Math.random().toString(36).slice(2)}`;
  const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()));
  const members: EtcdMember[] = Array.from({ length: size }, (_, i) => {
    const clientUrl = `${tls ? "https" : "http"}://127.0.0.1:${ports[2 * i]}`;
    return {
      name: `m${i}`,
      endpoint: `127.0.0.1:${ports[2 * i]}`,
      clientUrl,
      dataDir: join(root, `m${i}`),
      logFile: join(root, `m${i}.log`),
      process: undefined,
      args: [],
    };
  });
  const initialCluster = members.map((m, i) => `${m.name}=http://127.0.0.1:${ports[2 * i + 1]}`).join(",");
  /** A member's etcd flags: its URLs, the cluster it starts in or joins, and the test tuning. */
  const memberArgs = (m: EtcdMember, peerUrl: string, cluster: string, state: "new" | "existing") => [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--listen-client-urls=${m.clientUrl}`,
    `--advertise-client-urls=${m.clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${cluster}`,
    `--initial-cluster-token=${token}`,
    `--initial-cluster-state=${state}`,
    "--heartbeat-interval=50",
    "--election-timeout=500",
    "--logger=zap",
    "--log-outputs=stderr",
    // With TLS, clients must present a certificate signed by the CA.
    ...(tls
      ? [
          `--cert-file=${tls.server.cert}`,
          `--key-file=${tls.server.key}`,
          `--trusted-ca-file=${tls.ca}`,
          "--client-cert-auth",
        ]
      : []),
    ...extraArgs,
  ];
  members.forEach((m, i) => {
    m.args = memberArgs(m, `http://127.0.0.1:${ports[2 * i + 1]}`, initialCluster, "new");
  });

  const launch = (m: EtcdMember) => {
    const log = openSync(m.logFile, "a");
    m.process = spawn("etcd", m.args, { stdio: ["ignore", log, log] });
  };
  members.forEach(launch);
  await Promise.all(members.map((m) => waitHealthy(m.clientUrl, tls)));

  /** Runs etcdctl against a live member other than `except`; returns its stdout. */
  const ctlVia = (args: string[], except?: EtcdMember) => {
    const via = members.find((m) => m !== except && m.process)!;
    return execFileSync("etcdctl", [`--endpoints=${via.endpoint}`, ...args], {
      encoding: "utf8",
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  };
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint).join(","),
    async kill(member) {
      const p = member.process;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGKILL");
      await exited;
      member.process = undefined;
    },
    async restart(member) {
      launch(member);
      await waitHealthy(member.clientUrl, tls);
    },
    async add(options = {}) {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      const name = `m${members.length}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      // etcd takes a member only once every member has been connected a while (strict reconfig check).
      let added = "";
      for (let attempt = 0; !added; attempt++) {
        try {
          added = ctlVia(["member", "add", name, `--peer-urls=${peerUrl}`, ...(options.learner ? ["--learner"] : [])]);
        } catch (err) {
          if (attempt > 100) throw err;
          await sleep(100);
        }
      }
      const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
      const member: EtcdMember = {
        name,
        endpoint: `127.0.0.1:${clientPort}`,
        clientUrl: `${tls ? "https" : "http"}://127.0.0.1:${clientPort}`,
        dataDir: join(root, name),
        logFile: join(root, `${name}.log`),
        process: undefined,
        args: [],
      };
      member.args = memberArgs(member, peerUrl, initial, "existing");
      members.push(member);
      launch(member);
      await waitHealthy(member.clientUrl, tls);
      return member;
    },
    async remove(member) {
      // The table, not JSON: etcdctl prints IDs in JSON as numbers, which lose precision.
      const hex = ctlVia(["member", "list"], member)
        .split("\n")
        .find((line) => line.split(", ")[2] === member.name)
        ?.split(", ")[0];
      if (!hex) throw new Error(`${member.name} is not a member`);
      for (let attempt = 0; ; attempt++) {
        try {
          ctlVia(["member", "remove", hex], member);
          break;
        } catch (err) {
          if (attempt > 100) throw err;
          await sleep(100);
        }
      }
      await cluster.kill(member);
    },
    async stop() {
      await Promise.all(members.map((m) => cluster.kill(m)));
      rmSync(root, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** GETs a JSON document, over https with the harness's client certificate when given. */
function getJson(url: string, tls?: EtcdTls): Promise<unknown> {
  if (!tls) return fetch(url).then((r) => r.json());
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { ca: readFileSync(tls.ca), cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key) },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => {
          try {
            resolve(JSON.parse(body));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("error", reject);
  });
}

/** Waits until etcd's own /health says true (it has a leader). */
export async function waitHealthy(clientUrl: string, tls?: EtcdTls, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const body = (await getJson(`${clientUrl}/health`, tls)) as { health: string };
      if (body.health === "true") return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`etcd at ${clientUrl} did not become healthy`);
    await sleep(100);
  }
}

/** etcd's count of open gRPC streams of one method (started minus handled). */
export async function openStreams(clientUrl: string, method: string): Promise<number> {
  const count = await grpcCounters(clientUrl, method);
  return count("grpc_server_started_total") - count("grpc_server_handled_total");
}

/** How many calls of one method etcd has started. */
export async function callsStarted(clientUrl: string, method: string): Promise<number> {
  return (await grpcCounters(clientUrl, method))("grpc_server_started_total");
}

/** etcd's gRPC server counters of one method, summed over their other labels. */
async function grpcCounters(clientUrl: string, method: string): Promise<(metric: string) => number> {
  const text = await (await fetch(`${clientUrl}/metrics`)).text();
  return (metric) =>
    text
      .split("\n")
      .filter((l) => l.startsWith(`${metric}{`) && l.includes(`grpc_method="${method}"`))
      .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}
