import { join } from "node:path";
import { PACKAGE_ROOT } from "../../src/package-root.js";

/** A path inside the repository, whether the tests run as TypeScript or compiled (build/tests/). */
export function repoPath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}

/** The built command line, `etcd-connect-proxy`. */
export const PROXY_BIN = repoPath("bin", "etcd-connect-proxy.js");
