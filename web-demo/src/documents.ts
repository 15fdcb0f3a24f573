// What a value's text is (JSON, YAML, TOML or plain text) and whether it
// is valid: pure functions, shared by the editor's highlighting, its lint
// marks and the warning before an invalid document is saved.
import { parse as parseToml, TomlError } from "smol-toml";
import { parseAllDocuments } from "yaml";

export type Language = "text" | "json" | "yaml" | "toml";

export const LANGUAGE_NAMES: Record<Language, string> = { text: "text", json: "JSON", yaml: "YAML", toml: "TOML" };

export interface Problem {
  message: string;
  /** Offsets into the text, for the editor's mark. */
  from: number;
  to: number;
}

/** Why `source` is not a valid document of `language`; undefined when it is (plain text always is). */
export function problemOf(source: string, language: Language): Problem | undefined {
  const problem = findProblem(source, language);
  if (!problem) return undefined;
  // Parsers may point just past the end (an unclosed quote); marks must stay inside.
  const from = Math.min(Math.max(0, problem.from), source.length);
  return { ...problem, from, to: Math.min(Math.max(from, problem.to), source.length) };
}

function findProblem(source: string, language: Language): Problem | undefined {
  switch (language) {
    case "json":
      try {
        JSON.parse(source);
        return undefined;
      } catch (err) {
        const message = (err as Error).message;
        const at = Number(/position (\d+)/.exec(message)?.[1] ?? source.length);
        return { message, from: at, to: at + 1 };
      }
    case "yaml":
      for (const doc of parseAllDocuments(source)) {
        const error = doc.errors[0];
        if (error)
          return { message: error.message.split("\n")[0]!.replace(/:$/, ""), from: error.pos[0], to: error.pos[1] };
      }
      return undefined;
    case "toml":
      try {
        parseToml(source);
        return undefined;
      } catch (err) {
        if (!(err instanceof TomlError)) throw err;
        const from = offsetOf(source, err.line, err.column);
        return {
          message: `${err.message.split("\n")[0]!} at line ${err.line}, column ${err.column}`,
          from,
          to: from + 1,
        };
      }
    default:
      return undefined;
  }
}

/**
 * The language a value is written in, judged from its text: JSON when it
 * parses as an object or array, TOML when it has tables or key = value
 * lines and parses, YAML when it parses into a mapping or sequence; plain
 * text otherwise (a bare word is valid YAML but nobody means it so).
 */
export function detectLanguage(source: string): Language {
  const s = source.trim();
  if (!s) return "text";
  if (/^[[{]/.test(s) && problemOf(s, "json") === undefined) return "json";
  if (/^\s*(\[[^\]\n]+\]|[\w."-]+\s*=)/m.test(s) && problemOf(s, "toml") === undefined) return "toml";
  if (/^(---|- |[\w"'./-][^\n]*:(\s|$))/m.test(s)) {
    const docs = parseAllDocuments(s);
    const structured = docs.every(
      (d) => d.errors.length === 0 && d.contents !== null && typeof d.contents === "object" && "items" in d.contents,
    );
    if (docs.length > 0 && structured) return "yaml";
  }
  return "text";
}

/** The offset of a 1-based line and column. */
function offsetOf(source: string, line: number, column: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const next = source.indexOf("\n", offset);
    if (next < 0) return source.length;
    offset = next + 1;
  }
  return Math.min(source.length, offset + Math.max(0, column - 1));
}
