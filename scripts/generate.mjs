#!/usr/bin/env node
// Generates TypeScript for etcd's API at build time, offline.
//
// etcd's schema is not committed here: it comes from the etcd3 npm package,
// whose proto/ folder holds rpc.proto, kv.proto and auth.proto. Those files
// carry grpc-gateway options (google.api.http) and relative imports that buf
// cannot resolve, so this script rewrites them into build/etcd-proto/ with
// etcd's own module paths, then runs `buf generate` over that folder and our
// own proto/ (see buf.yaml). Output lands in src/gen/, which git ignores.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const etcd3Protos = join(dirname(require.resolve("etcd3/package.json")), "proto");
const outRoot = join(root, "build", "etcd-proto");

/** Where each etcd3 file goes, by etcd's own module path. */
const layout = {
  "rpc.proto": "etcd/api/etcdserverpb/rpc.proto",
  "kv.proto": "etcd/api/mvccpb/kv.proto",
  "auth.proto": "etcd/api/authpb/auth.proto",
};

/**
 * RPCs that only read: the one list of them (src/grpc/method-effects.ts
 * reads it back from the descriptors, for the retry policy and the range
 * cache). Marking them NO_SIDE_EFFECTS also lets Connect serve them over
 * HTTP GET (curl, browser caches); the wire format is unchanged.
 */
const readOnlyRpcs = new Set([
  "Range",
  "LeaseTimeToLive",
  "LeaseLeases",
  "MemberList",
  "Status",
  "Hash",
  "HashKV",
  "AuthStatus",
  "UserGet",
  "UserList",
  "RoleGet",
  "RoleList",
  "Leader",
]);

/** Removes every `option (<ext>) = <value>;` whose extension is not ours. */
function stripForeignOptions(text) {
  const out = [];
  let i = 0;
  const pattern = /option\s*\(\s*(google\.api|gogoproto|grpc\.gateway|openapiv2)[^)]*\)\s*=/g;
  for (;;) {
    pattern.lastIndex = i;
    const m = pattern.exec(text);
    if (!m) break;
    out.push(text.slice(i, m.index));
    // Skip the value: a scalar up to ';', or a {...} block that may nest and
    // contain quoted strings with braces in them.
    let j = m.index + m[0].length;
    let depth = 0;
    let quote = null;
    for (; j < text.length; j++) {
      const c = text[j];
      if (quote) {
        if (c === "\\") j++;
        else if (c === quote) quote = null;
      } else if (c === '"' || c === "'") quote = c;
      else if (c === "{") depth++;
      else if (c === "}") depth--;
      else if (c === ";" && depth === 0) break;
    }
    i = j + 1;
  }
  out.push(text.slice(i));
  return out.join("");
}

/**
 * The etcd3 package spells enum values in PascalCase (`Put`, `NotEqual`);
 * etcd spells them UPPER_SNAKE (`PUT`, `NOT_EQUAL`). Binary gRPC does not
 * care, but Connect JSON sends the names, so they must be etcd's.
 */
function restoreEtcdEnumNames(text) {
  return text.replace(/(enum\s+\w+\s*\{)([^}]*)(\})/g, (_, open, body, close) => {
    const values = body.replace(/^(\s*)([A-Z][A-Za-z0-9]*)(\s*=)/gm, (__, indent, name, eq) => {
      return indent + name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase() + eq;
    });
    return open + values + close;
  });
}

function rewrite(text) {
  let t = restoreEtcdEnumNames(stripForeignOptions(text));
  t = t.replace(/^\s*import\s+"(google|gogoproto|protoc-gen-openapiv2)\/[^"]+";\s*$/gm, "");
  t = t.replace(/import\s+"\.\/([a-z_]+\.proto)";/g, (_, file) => {
    const target = layout[file];
    if (!target) throw new Error(`unexpected import of ${file}`);
    return `import "${target}";`;
  });
  // rpc Name(Req) returns (Res) { ... }  ->  add the idempotency option.
  t = t.replace(/rpc\s+(\w+)\s*\(([^)]*)\)\s*returns\s*\(([^)]*)\)\s*\{/g, (whole, name) =>
    readOnlyRpcs.has(name) ? `${whole}\n    option idempotency_level = NO_SIDE_EFFECTS;` : whole,
  );
  return t;
}

/**
 * etcd's JSON gateway routes, read from the google.api.http options before
 * they are stripped: [path, "package.Service", "Method"].
 */
function gatewayRoutes(text) {
  const routes = [];
  let service = "";
  const token =
    /service\s+(\w+)\s*\{|rpc\s+(\w+)\s*\([^)]*\)\s*returns\s*\([^)]*\)\s*\{\s*option\s*\(google\.api\.http\)\s*=\s*\{\s*post:\s*"([^"]+)"/g;
  for (const m of text.matchAll(token)) {
    if (m[1]) service = m[1];
    else routes.push([m[3], `etcdserverpb.${service}`, m[2]]);
  }
  return routes;
}

rmSync(outRoot, { recursive: true, force: true });
const routes = gatewayRoutes(readFileSync(join(etcd3Protos, "rpc.proto"), "utf8"));
for (const [file, target] of Object.entries(layout)) {
  const dest = join(outRoot, target);
  mkdirSync(dirname(dest), { recursive: true });
  writeFileSync(dest, rewrite(readFileSync(join(etcd3Protos, file), "utf8")));
}

rmSync(join(root, "src", "gen"), { recursive: true, force: true });
const bin = join(root, "node_modules", ".bin");
execFileSync(join(bin, "buf"), ["generate"], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
});
writeFileSync(
  join(root, "src", "gen", "gateway-routes.ts"),
  `// Generated by scripts/generate.mjs from the google.api.http options of etcd's rpc.proto.\n` +
    `export const GATEWAY_ROUTES: ReadonlyArray<readonly [path: string, service: string, method: string]> = ${JSON.stringify(routes, null, 2)};\n`,
);
console.log(`generated src/gen from etcd3's protos and proto/ (${routes.length} gateway routes)`);
