// The README is the operator's reference: every flag must appear in it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import { PROXY_FLAGS } from "../../src/config/proxy-flags.js";
import { repoPath } from "../helpers/repo.js";

it("the README documents every flag", () => {
  const readme = readFileSync(repoPath("README.md"), "utf8");
  for (const flag of PROXY_FLAGS)
    assert.ok(readme.includes(`\`--${flag.name}\``), `--${flag.name} is missing from README.md`);
});
