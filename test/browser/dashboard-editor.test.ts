// The value editor in chromium: the language of a value detected and
// highlighted (JSON, YAML, TOML), invalid documents marked and saved only
// after a warning, two revisions compared side by side, and a write
// conflict merged in the three-way view instead of refused.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SCREENSHOTS, editorText, typeInEditor, useDialogs, usePage, waitForEditorText } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";

type Plain = Record<string, any>;

describe("the dashboard's value editor", () => {
  const f = useProxy(1);
  const page = usePage();
  let answer = true;
  const asked = useDialogs(page, () => answer);

  const put = (key: string, value: string) =>
    f.direct.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) }) as Promise<Plain>;
  const valueOf = async (key: string) =>
    Buffer.from(((await f.direct.unary("KV", "Range", { key: Buffer.from(key) })) as Plain).kvs[0].value).toString();
  const openKey = async (key: string) => {
    await page.fill("#browse input[name=prefix]", "cfg/");
    await page.click("#browse button[type=submit]");
    await page.locator(`.leaf[data-key="${key}"]`).click();
    await page.locator("#editor-key", { hasText: key }).waitFor();
  };
  /** Highlighted tokens: CodeMirror wraps each in a span of the highlight style. */
  const highlighted = () => page.locator("#value .cm-line span").count();

  it("detects JSON, YAML, TOML and plain text, and highlights the first three", async () => {
    await put("cfg/app.json", '{"name":"demo","replicas":3}');
    await put("cfg/app.yaml", "name: demo\nreplicas: 3\nports:\n  - 80\n");
    await put("cfg/app.toml", '[server]\nhost = "0.0.0.0"\nport = 8080\n');
    await put("cfg/plain", "just words, no: [document");
    await page.goto(`http://${f.proxy.address}/`);
    for (const [key, format] of [
      ["cfg/app.json", "json"],
      ["cfg/app.yaml", "yaml"],
      ["cfg/app.toml", "toml"],
    ] as const) {
      await openKey(key);
      await page.locator("#validation", { hasText: `valid ${format.toUpperCase()}` }).waitFor();
      assert.equal(await page.inputValue("#format"), format, key);
      assert.ok((await highlighted()) > 2, `${key} highlighted`);
    }
    await page.screenshot({ path: `${SCREENSHOTS}/16-editor-toml.png`, fullPage: true });
    await openKey("cfg/plain");
    await waitForEditorText(page, "just words, no: [document");
    assert.equal(await page.inputValue("#format"), "text");
    assert.equal(await highlighted(), 0);
    // Switchable: the same text read as YAML is checked as YAML.
    await page.selectOption("#format", "yaml");
    await page.locator("#validation.invalid", { hasText: "not valid YAML" }).waitFor();
  });

  it("marks an invalid document and saves it only after a warning", async () => {
    await openKey("cfg/app.yaml");
    await typeInEditor(page, "name: demo\nports: [80, 443\nreplicas: 3\n");
    await page.locator("#validation.invalid", { hasText: "not valid YAML" }).waitFor();
    await page.locator("#value .cm-lintRange-error").first().waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/17-editor-invalid.png`, fullPage: true });

    answer = false;
    await page.click("#save");
    await page.locator("#editor-status", { hasText: "not saved" }).waitFor();
    assert.match(asked.at(-1)!, /^This is not valid YAML:\n.+\n\nSave it anyway\?/);
    assert.equal(await valueOf("cfg/app.yaml"), "name: demo\nreplicas: 3\nports:\n  - 80\n");

    answer = true;
    await page.click("#save");
    await page.locator("#editor-status", { hasText: "saved at revision" }).waitFor();
    assert.equal(await valueOf("cfg/app.yaml"), "name: demo\nports: [80, 443\nreplicas: 3\n");
  });

  it("compares any two revisions of a key side by side", async () => {
    await put("cfg/app.json", '{"name":"demo","replicas":4}');
    await put("cfg/app.json", '{"name":"demo2","replicas":4}');
    await openKey("cfg/app.json");
    await page.click("#history-btn");
    await page.locator("#diff-picker").waitFor();
    const revisions = await page.locator("#diff-a option").allTextContents();
    assert.equal(revisions.length, 3, revisions.join(", "));
    await page.selectOption("#diff-a", { index: 2 });
    await page.selectOption("#diff-b", { index: 0 });
    await page.click("#diff-show");
    await page.locator("#diff-view .cm-changedText").first().waitFor();
    assert.equal(await editorText(page, "#diff-view .cm-merge-a"), '{\n  "name": "demo",\n  "replicas": 3\n}');
    assert.equal(await editorText(page, "#diff-view .cm-merge-b"), '{\n  "name": "demo2",\n  "replicas": 4\n}');
    assert.match((await page.textContent("#diff-caption"))!, /^revision \d+ \(left\) and revision \d+ \(right\)$/);
    await page.screenshot({ path: `${SCREENSHOTS}/18-editor-diff.png`, fullPage: true });
  });

  it("merges a conflicting write in a three-way view: base, theirs, yours", async () => {
    const lines = (...changes: Array<[number, string]>) => {
      const out = ["one", "two", "three", "four", "five", "six", "seven", "eight"];
      for (const [i, line] of changes) out[i] = line;
      return out.join("\n");
    };
    const base = lines();
    const theirs = lines([1, "TWO (theirs)"]);
    const mine = lines([7, "eight (mine)"]);
    await put("cfg/notes", base);
    await openKey("cfg/notes");
    await waitForEditorText(page, base);
    await put("cfg/notes", theirs);
    await typeInEditor(page, mine);
    await page.click("#save");
    await page.locator("#editor-status.conflict").waitFor();
    await page.locator("#merge").waitFor();
    assert.equal(await valueOf("cfg/notes"), theirs, "nothing overwritten");
    await waitForEditorText(page, base, "#merge-base");
    await waitForEditorText(page, theirs, "#merge-view .cm-merge-a");
    await waitForEditorText(page, mine, "#merge-view .cm-merge-b");
    // Take their change of line 2; keep my change of line 8.
    await page.locator("#merge-view .cm-merge-revert button").first().click();
    const merged = lines([1, "TWO (theirs)"], [7, "eight (mine)"]);
    await waitForEditorText(page, merged, "#merge-view .cm-merge-b");
    await page.screenshot({ path: `${SCREENSHOTS}/19-editor-merge.png`, fullPage: true });
    await page.click("#merge-save");
    await page.locator("#editor-status", { hasText: "saved at revision" }).waitFor();
    assert.equal(await valueOf("cfg/notes"), merged);
    assert.ok(await page.locator("#merge").isHidden());
  });
});
