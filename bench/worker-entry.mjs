// Worker threads on node 20 load their entry before --import hooks apply, so
// this plain-JS entry registers tsx itself, then loads the TypeScript module.
import { register } from "tsx/esm/api";
import { workerData } from "node:worker_threads";

register();
await import(workerData.entry);
