import { buildConfig } from "../../src/config/config.js";
import { startProxy, type RunningProxy } from "../../src/main.js";

/**
 * Starts the proxy in this process on a free port. Set PROXY_LOG=debug to see
 * its logs while debugging a test, and PROXY_LANE=connect to run the suite
 * with native gRPC served by Connect instead of the fast lane.
 */
export async function startTestProxy(endpoints: string, extraArgs: string[] = []): Promise<RunningProxy> {
  const config = buildConfig([
    `--endpoints=${endpoints}`,
    "--listen-addr=127.0.0.1:0",
    `--log-level=${process.env.PROXY_LOG ?? "silent"}`,
    `--grpc-lane=${process.env.PROXY_LANE ?? "native"}`,
    ...extraArgs,
  ]);
  return startProxy(config);
}
