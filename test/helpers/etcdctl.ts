import { execFile } from "node:child_process";

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs etcdctl (API v3) against `endpoint`, optionally feeding stdin. */
export function etcdctl(
  endpoint: string,
  args: string[],
  input?: string,
  extraEnv: Record<string, string> = {},
): Promise<CtlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      "etcdctl",
      [`--endpoints=${endpoint}`, "--dial-timeout=3s", "--command-timeout=10s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3", ...extraEnv }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Like etcdctl, but throws with etcdctl's stderr when it fails. */
export async function ctl(endpoint: string, args: string[], input?: string): Promise<string> {
  const r = await etcdctl(endpoint, args, input);
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A long-running etcdctl (watch, elect, lease keep-alive) whose output can be awaited. */
export interface RunningCtl {
  readonly output: () => string;
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function spawnCtl(endpoint: string, args: string[]): RunningCtl {
  const child = execFile("etcdctl", [`--endpoints=${endpoint}`, ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  let out = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: string | Buffer) => {
    out += chunk.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    output: () => out,
    waitFor(text, timeoutMs = 10_000) {
      const matches = () => (typeof text === "string" ? out.includes(text) : text.test(out));
      if (matches()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`etcdctl ${args.join(" ")}: no ${String(text)} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        const check = () => {
          if (!matches()) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        };
        listeners.add(check);
      });
    },
    async kill(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
