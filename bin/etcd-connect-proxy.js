#!/usr/bin/env node
// Runs the compiled CLI; build first with `npm run build`.
import { run } from "../dist/cli.js";

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`etcd-connect-proxy: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
