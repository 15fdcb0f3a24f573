/**
 * A small command-line parser with Go pflag semantics, because our flags must
 * read exactly like `etcd grpc-proxy start`'s: `--name=value` or
 * `--name value`, booleans as `--flag`, `--flag=true` or `--flag=false`, and
 * Go duration strings such as `5s`, `2h` or `1m30s`.
 */

export type FlagType = "string" | "bool" | "uint" | "duration" | "list";

export interface FlagSpec {
  name: string;
  type: FlagType;
  /** The default as etcd prints it (a duration in Go syntax, a list comma-joined). */
  default: string;
  help: string;
}

export type FlagValue = string | boolean | number | string[];

export interface ParsedFlags {
  /** Every flag's value, defaults included; durations in milliseconds. */
  values: Map<string, FlagValue>;
  /** The flags the user gave explicitly. */
  given: Set<string>;
  /** Arguments that are not flags. */
  positional: string[];
}

export class FlagError extends Error {}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration ("300ms", "1m30s", "0") into milliseconds. */
export function parseDuration(text: string): number {
  if (text === "0") return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    part.lastIndex = pos;
    const m = part.exec(text);
    if (!m) throw new FlagError(`invalid duration "${text}" (examples: 500ms, 5s, 2h, 1m30s)`);
    total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    pos = part.lastIndex;
  }
  if (text.length === 0) throw new FlagError(`invalid duration "" (examples: 500ms, 5s, 2h, 1m30s)`);
  return total;
}

function convert(spec: FlagSpec, raw: string): FlagValue {
  switch (spec.type) {
    case "string":
      return raw;
    case "bool":
      if (/^(true|1|t)$/i.test(raw)) return true;
      if (/^(false|0|f)$/i.test(raw)) return false;
      throw new FlagError(`invalid value "${raw}" for --${spec.name}: expected true or false`);
    case "uint": {
      if (!/^\d+$/.test(raw))
        throw new FlagError(`invalid value "${raw}" for --${spec.name}: expected a non-negative integer`);
      return Number(raw);
    }
    case "duration":
      try {
        return parseDuration(raw);
      } catch (e) {
        throw new FlagError(`invalid value for --${spec.name}: ${(e as Error).message}`);
      }
    case "list":
      return raw === "" ? [] : raw.split(",").map((s) => s.trim());
  }
}

export function parseFlags(specs: readonly FlagSpec[], argv: readonly string[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, FlagValue>(specs.map((s) => [s.name, convert(s, s.default)]));
  const given = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--") || arg === "--") {
      if (arg.startsWith("-") && arg.length > 1)
        throw new FlagError(`unknown shorthand flag: ${arg} (flags are spelled --name)`);
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new FlagError(`unknown flag: --${name}`);
    let raw: string;
    if (eq !== -1) raw = arg.slice(eq + 1);
    else if (spec.type === "bool") raw = "true";
    else if (i + 1 < argv.length) raw = argv[++i]!;
    else throw new FlagError(`flag needs an argument: --${name}`);
    const value = convert(spec, raw);
    // A list flag given again adds to the list, as Go's string-slice flags do.
    const earlier = given.has(name) ? values.get(name) : undefined;
    values.set(name, Array.isArray(earlier) && Array.isArray(value) ? [...earlier, ...value] : value);
    given.add(name);
  }
  return { values, given, positional };
}

/** `--help` text: one line per flag with its default, in the order given. */
export function formatFlagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = `  --${s.name}${s.type === "bool" ? "" : ` ${s.type === "list" ? "strings" : s.type}`}`;
    const def =
      s.default === "" || (s.type === "bool" && s.default === "false") ? "" : ` (default ${JSON.stringify(s.default)})`;
    return [left, `${s.help}${def}`] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(width) + r).join("\n");
}
