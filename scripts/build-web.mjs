#!/usr/bin/env node
// Builds the dashboard (web-demo/) into build/web-demo/, which the proxy
// serves at /. esbuild bundles the TypeScript, including the generated etcd
// schema it shares with the proxy.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "build", "web-demo");
rmSync(out, { recursive: true, force: true }); // no stale chunks
mkdirSync(out, { recursive: true });
await build({
  // app.js, and chunks loaded on demand (the code editor comes with the first key opened).
  entryPoints: { app: join(root, "web-demo", "src", "main.ts") },
  bundle: true,
  splitting: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outdir: out,
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(join(root, "web-demo", file), join(out, file));
copyFileSync(join(root, "node_modules", "uplot", "dist", "uPlot.min.css"), join(out, "uplot.css"));
console.log("built the dashboard into build/web-demo");
