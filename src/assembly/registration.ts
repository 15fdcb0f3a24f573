import { hostname } from "node:os";
import type { ProxyConfig } from "../config/config.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import { ProxyDirectory } from "../registry/proxy-directory.js";
import { Registration } from "../registry/registration.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import type { WatchHub } from "../watch/watch-hub.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";

/**
 * --resolver-prefix: this proxy's record, and the directory of every
 * proxy's that MemberList answers from. Started once the port listens (the
 * record carries its address); stopped first, so clients stop being sent here.
 */
export function registration(
  config: ProxyConfig["registration"],
  advertise: () => string,
  upstream: Upstream,
  keepAlives: KeepAliveCoalescer,
  watches: WatchHub,
  identity: ProxyIdentity,
  problem: Problem,
): { directory: ProxyDirectory | undefined } & Feature {
  const { prefix, ttlSeconds } = config;
  if (!prefix) return { directory: undefined };
  const record = new Registration(upstream, keepAlives, {
    prefix,
    ttlSeconds,
    advertise,
    name: hostname(),
    identity,
    onProblem: problem,
  });
  // etcd's proxy tracks the others only when it also has an address to give.
  const directory = advertise() !== "" ? new ProxyDirectory(upstream, watches, prefix, identity, problem) : undefined;
  return {
    directory,
    start() {
      record.start();
      directory?.start();
    },
    async stop() {
      directory?.stop();
      await record.stop();
    },
  };
}
