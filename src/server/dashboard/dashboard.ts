import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../package-root.js";

/** Where `npm run build` puts the dashboard (web-demo/). */
const DASHBOARD_DIR = join(PACKAGE_ROOT, "build", "web-demo") + "/";

/**
 * What the page may do: load its own scripts, styles and images, call its
 * own origin, and nothing else. No frame may hold it (clickjacking), no
 * <base> may redirect it, and no form is ever submitted by the browser: the
 * page's script handles every form, so with the script blocked a login form
 * posts nothing anywhere. The editor (CodeMirror) writes its styles into
 * <style> elements, which carry the page's nonce; no other inline style or
 * script is allowed.
 */
function contentSecurityPolicy(styleNonce: string): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self' 'report-sample' 'nonce-${styleNonce}'`,
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'none'",
  ].join("; ");
}

/** Sent with the page and every one of its files. */
const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": contentSecurityPolicy("none"),
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** The URL paths of the dashboard's files ("/", "/app.js", "/chunks/…"), read once; empty when not built. */
export function dashboardPaths(): ReadonlySet<string> {
  const paths = new Set<string>();
  if (!existsSync(DASHBOARD_DIR)) return paths;
  paths.add("/");
  for (const entry of readdirSync(DASHBOARD_DIR, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const relative = `${entry.parentPath}/${entry.name}`.slice(DASHBOARD_DIR.length).replace(/^\/+/, "");
    paths.add(`/${relative}`);
  }
  return paths;
}

/**
 * Serves the dashboard at / from the same port. It is static: every call it
 * makes goes back to this proxy over Connect. Returns false when it was not
 * built, so the caller can say so.
 */
export async function registerDashboard(app: FastifyInstance): Promise<boolean> {
  if (!existsSync(DASHBOARD_DIR)) return false;
  const page = readFileSync(`${DASHBOARD_DIR}index.html`, "utf8");
  // The page itself is written per answer, with a new style nonce each time (the editor reads it from <meta>).
  const servePage = async (_request: FastifyRequest, reply: FastifyReply) => {
    const nonce = randomBytes(18).toString("base64");
    return reply
      .headers({
        ...DASHBOARD_HEADERS,
        "content-security-policy": contentSecurityPolicy(nonce),
        "cache-control": "no-store",
      })
      .type("text/html; charset=utf-8")
      .send(page.replace("<head>", `<head>\n    <meta name="csp-nonce" content="${nonce}" />`));
  };
  app.get("/", servePage);
  app.get("/index.html", servePage);
  await app.register(fastifyStatic, {
    root: DASHBOARD_DIR,
    prefix: "/",
    wildcard: false,
    index: false,
    globIgnore: ["index.html"],
    setHeaders: (res) => {
      for (const [name, value] of Object.entries(DASHBOARD_HEADERS)) res.setHeader(name, value);
    },
  });
  return true;
}
