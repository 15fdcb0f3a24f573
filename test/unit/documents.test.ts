// The dashboard's document checks (web-demo/src/documents.ts): which
// language a value is in, and where an invalid one goes wrong.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { stringify as toToml } from "smol-toml";
import { stringify as toYaml } from "yaml";
import { detectLanguage, problemOf } from "../../web-demo/src/documents.js";

const objects = fc.dictionary(
  fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/),
  fc.oneof(fc.integer(), fc.boolean(), fc.stringMatching(/^[a-z ]{1,12}$/), fc.array(fc.integer(), { maxLength: 3 })),
  { minKeys: 1, maxKeys: 6 },
);

describe("the dashboard's document checks", () => {
  it("detects JSON, YAML and TOML written by their own writers", () => {
    fc.assert(
      fc.property(objects, (o) => {
        assert.equal(detectLanguage(JSON.stringify(o)), "json");
        assert.equal(detectLanguage(JSON.stringify(o, null, 2)), "json");
        assert.equal(detectLanguage(toYaml(o)), "yaml");
        assert.equal(detectLanguage(toToml(o)), "toml");
      }),
    );
  });

  it("calls plain words, numbers and binary-looking text plain text", () => {
    for (const text of ["", "hello", "42", "just words, no: [document", "v1.2.3", "a=b&c=d?"]) {
      assert.equal(detectLanguage(text), "text", text);
    }
  });

  it("finds no problem in valid documents and points into invalid ones", () => {
    assert.equal(problemOf('{"a": [1, 2]}', "json"), undefined);
    assert.equal(problemOf("a: 1\nb: [1, 2]\n", "yaml"), undefined);
    assert.equal(problemOf('[s]\nk = "v"\n', "toml"), undefined);
    assert.equal(problemOf("anything at all {", "text"), undefined);

    const json = problemOf('{"a": 1,}', "json")!;
    assert.equal(json.from, 8, json.message);
    const yaml = problemOf("a: [1, 2\nb: 3\n", "yaml")!;
    assert.ok(yaml.from >= 0 && yaml.to > yaml.from, JSON.stringify(yaml));
    const toml = problemOf("a = 1\nb = = 2\n", "toml")!;
    assert.equal(toml.from, "a = 1\n".length + 4);
    assert.match(toml.message, /at line 2, column 5$/);
  });

  it("never throws, whatever the text", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 200 }),
        fc.constantFrom("json", "yaml", "toml", "text") as fc.Arbitrary<"json">,
        (text, language) => {
          const problem = problemOf(text, language);
          if (problem) assert.ok(problem.from >= 0 && problem.from <= text.length && problem.to <= text.length);
          detectLanguage(text);
        },
      ),
    );
  });
});
