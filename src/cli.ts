import { proxyVersion } from "./version.js";
import { loadConfig, parseConfig } from "./config/config.js";
import { PROXY_FLAGS } from "./config/proxy-flags.js";
import { FlagError, formatFlagHelp } from "./config/flags.js";
import { startProxy } from "./main.js";
import { tuneHeapForForwarding } from "./heap-tuning.js";

const PROGRAM = "etcd-connect-proxy";

const USAGE = `${PROGRAM}: a drop-in etcd v3 gRPC proxy (etcd grpc-proxy start), serving gRPC, gRPC-Web, Connect and HTTP on one port.

Usage:
  ${PROGRAM} start [flags]
  ${PROGRAM} --version
  ${PROGRAM} --help

Flags of start:
`;

export async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(`${USAGE}${formatFlagHelp(PROXY_FLAGS)}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version" || command === "version") {
    process.stdout.write(`${PROGRAM} ${proxyVersion()}\n`);
    return 0;
  }
  if (command !== "start") {
    process.stderr.write(`${PROGRAM}: unknown command "${command}" (try: ${PROGRAM} start --help)\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${USAGE}${formatFlagHelp(PROXY_FLAGS)}\n`);
    return 0;
  }

  let config;
  try {
    // Flags first, so that a mistake in them is told before any file is read or certificate made.
    config = loadConfig(parseConfig(rest));
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`${PROGRAM}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }

  tuneHeapForForwarding();
  const proxy = await startProxy(config);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      proxy.log.info({ signal }, "shutting down");
      void proxy.close().then(resolve, resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}
