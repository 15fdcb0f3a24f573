import { spawn, type ChildProcess } from "node:child_process";
import { freePort } from "./ports.js";

/** An SRV record: its full name (`_etcd-client._tcp.srv.test`), target host and port. */
export type SrvRecord = [name: string, target: string, port: number];

export interface TestDns {
  /** host:port of the server, for dns.setServers. */
  address: string;
  /** Serves `records` from now on (dnsmasq restarted on the same port). */
  serve(records: SrvRecord[]): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real DNS server on loopback (Debian's dnsmasq) answering SRV queries
 * with `records` and nothing else: no upstream servers, no hosts file.
 */
export async function startDns(records: SrvRecord[]): Promise<TestDns> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((r) => running.once("exit", r));
    running.kill("SIGTERM");
    await exited;
  };
  const serve = async (next: SrvRecord[]) => {
    await stop();
    const srv = next.map(([name, target, p]) => `--srv-host=${name},${target},${p},0,0`);
    const args = [
      "--no-daemon",
      `--port=${port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--pid-file=",
      ...srv,
    ];
    child = spawn(process.platform === "linux" ? "/usr/sbin/dnsmasq" : "dnsmasq", args, { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 300)); // dnsmasq binds at once; give it a moment
  };
  await serve(records);
  return { address: `127.0.0.1:${port}`, serve, stop };
}
