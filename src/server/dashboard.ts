import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Where `npm run build` puts the dashboard (web-demo/), from src/ or dist/ alike. */
const DASHBOARD_DIR = fileURLToPath(new URL("../../build/web-demo/", import.meta.url));

/**
 * Serves the dashboard at / from the same port. It is static: every call it
 * makes goes back to this proxy over Connect. Returns false when it was not
 * built, so the caller can say so.
 */
export async function registerDashboard(app: FastifyInstance): Promise<boolean> {
  if (!existsSync(DASHBOARD_DIR)) return false;
  await app.register(fastifyStatic, { root: DASHBOARD_DIR, prefix: "/", wildcard: false, index: ["index.html"] });
  return true;
}
