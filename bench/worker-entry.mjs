// Worker threads on node 20 load their entry before --import hooks apply, so
// this plain-JS entry registers tsx itself when the load generator runs as
// TypeScript, then loads it; compiled (build/tests/), it needs no tsx.
import { workerData } from "node:worker_threads";

if (workerData.entry.endsWith(".ts")) (await import("tsx/esm/api")).register();
await import(workerData.entry);
