// The open key: its value in the editor, in the language it is written in;
// every save and delete a compare-and-swap on the revision the user saw; a
// conflict opens a three-way merge instead of overwriting; history, and any
// two revisions side by side.
import { Compare_CompareResult, Compare_CompareTarget } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { bookmarks, toggleBookmark } from "./bookmarks.js";
import { bytes, kv, text } from "./client.js";
import type { Language } from "./documents.js";
import type { ValueEditor } from "./editor.js";
import { describeKubernetesObject, isKubernetesObject } from "./k8s.js";
import { $, debounce, el, showError, visible } from "./ui.js";

interface Selected {
  key: Uint8Array;
  value: Uint8Array;
  modRevision: bigint;
  /** Stored as one-line JSON: a valid edit in the JSON view is saved so again. */
  compactJson: boolean;
}

/** The editor module (CodeMirror) loads with the first key opened. */
let editorModule: Promise<typeof import("./editor.js")> | undefined;
const loadEditor = () => (editorModule ??= import("./editor.js"));

let editor: ValueEditor | undefined;
/** Closes the diff or merge view on show, if any. */
let closeSideView: (() => void) | undefined;
let selected: Selected | undefined;
/** The revisions the history listed, for the diff's two pickers. */
let shownVersions: Array<{ modRevision: bigint; value: Uint8Array }> = [];

/** Wires the editor's buttons; `afterDelete` refreshes whatever listed the key. */
export function setupKeyView(afterDelete: () => void): void {
  $("#save").addEventListener("click", () => void save());
  $("#delete").addEventListener("click", () => void remove().then((gone) => gone && afterDelete()));
  $("#history-btn").addEventListener("click", () => void history());
  $<HTMLSelectElement>("#format").addEventListener("change", () => selected && void render(selected));
  $("#bookmark").addEventListener("click", () => selected && toggleBookmark(text(selected.key)));
  document.addEventListener("bookmarks", labelBookmarkButton);
  $("#copy-key").addEventListener("click", () => selected && copy(text(selected.key), "key"));
  $("#copy-value").addEventListener("click", () => editor && copy(editor.text, "value"));
  $("#diff-show").addEventListener("click", () => void compareRevisions());
}

function labelBookmarkButton(): void {
  if (selected) $("#bookmark").textContent = bookmarks().includes(text(selected.key)) ? "Remove bookmark" : "Bookmark";
}

/** Copies `what` to the clipboard, saying so. */
function copy(what: string, name: string): void {
  navigator.clipboard.writeText(what).then(() => ($("#editor-status").textContent = `${name} copied`), showError);
}

/** Opens `key` in the editor: read afresh, shown in its language. */
export async function openKey(key: string): Promise<void> {
  try {
    const r = await kv.range({ key: bytes(key) });
    const item = r.kvs[0];
    if (!item) return showError(new Error(`${key} no longer exists`));
    const { detectLanguage } = await loadEditor();
    selected = {
      key: item.key,
      value: item.value,
      modRevision: item.modRevision,
      compactJson:
        isUtf8(item.value) && !text(item.value).includes("\n") && detectLanguage(text(item.value)) === "json",
    };
    for (const a of document.querySelectorAll(".leaf.selected")) a.classList.remove("selected");
    document.querySelector(`.leaf[data-key="${CSS.escape(key)}"]`)?.classList.add("selected");
    $("#editor").hidden = false;
    $("#editor-key").textContent = visible(key);
    $("#editor-meta").textContent =
      `revision ${item.modRevision} (created at ${item.createRevision}), version ${item.version}` +
      (item.lease ? `, lease ${item.lease.toString(16)}` : "");
    $("#editor-status").textContent = "";
    $("#editor-status").className = "";
    $("#history").replaceChildren();
    $("#diff-picker").hidden = true;
    closeSide();
    labelBookmarkButton();
    // Kubernetes' protobuf objects are shown decoded, other binary values as hex, text in its language.
    $<HTMLSelectElement>("#format").value = isKubernetesObject(item.value)
      ? "kubernetes"
      : isUtf8(item.value)
        ? detectLanguage(text(item.value))
        : "hex";
    await render(selected);
  } catch (err) {
    showError(err);
  }
}

const isUtf8 = (value: Uint8Array): boolean => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(value);
    return true;
  } catch {
    return false;
  }
};

/** The editor's language for a view of the select. */
const languageOfFormat = (format: string): Language =>
  format === "json" || format === "yaml" || format === "toml" ? format : "text";

async function render(s: Selected): Promise<void> {
  const format = $<HTMLSelectElement>("#format").value;
  const { ValueEditor } = await loadEditor();
  // The status line follows typing at the lint marks' pace, not every keystroke (a large document parses slowly).
  editor ??= new ValueEditor(
    $("#value"),
    debounce(() => void showValidity(), 250),
  );
  editor.show(formatValue(s.value, format), languageOfFormat(format), format === "kubernetes");
  await showValidity();
}

/** Says whether the text is valid in the chosen language, as the lint marks do. */
async function showValidity(): Promise<void> {
  const { problemOf, LANGUAGE_NAMES } = await loadEditor();
  const language = languageOfFormat($<HTMLSelectElement>("#format").value);
  const problem = editor && problemOf(editor.text, language);
  const line = $("#validation");
  line.className = problem ? "invalid" : "";
  line.textContent =
    language === "text"
      ? ""
      : problem
        ? `not valid ${LANGUAGE_NAMES[language]}: ${problem.message}`
        : `valid ${LANGUAGE_NAMES[language]}`;
}

function formatValue(value: Uint8Array, format: string): string {
  switch (format) {
    case "json":
      try {
        return JSON.stringify(JSON.parse(text(value)), null, 2);
      } catch {
        return text(value);
      }
    case "hex":
      return [...value].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    case "base64":
      return btoa(String.fromCharCode(...value));
    case "kubernetes":
      return isKubernetesObject(value) ? describeKubernetesObject(value) : text(value);
    default:
      return text(value);
  }
}

/** The bytes to store for the editor's text; undefined when the user keeps an invalid document unsaved. */
async function valueToSave(input: string, format: string, s: Selected): Promise<Uint8Array | undefined> {
  const { problemOf, LANGUAGE_NAMES } = await loadEditor();
  const language = languageOfFormat(format);
  const problem = problemOf(input, language);
  if (problem) {
    const name = LANGUAGE_NAMES[language];
    if (
      !confirm(
        `This is not valid ${name}:\n${problem.message}\n\nSave it anyway? Readers that parse it as ${name} will fail.`,
      )
    )
      return undefined;
    return bytes(input);
  }
  return format === "json" && s.compactJson ? bytes(JSON.stringify(JSON.parse(input))) : parseValue(input, format);
}

function parseValue(input: string, format: string): Uint8Array {
  switch (format) {
    case "hex":
      return new Uint8Array((input.match(/[0-9a-f]{2}/gi) ?? []).map((h) => parseInt(h, 16)));
    case "base64":
      return Uint8Array.from(atob(input.trim()), (c) => c.charCodeAt(0));
    case "kubernetes":
      throw new Error("the Kubernetes view is read-only: show the value as base64 or hex to edit it");
    default:
      return bytes(input);
  }
}

const modRevisionIs = (key: Uint8Array, rev: bigint) => ({
  key,
  target: Compare_CompareTarget.MOD,
  result: Compare_CompareResult.EQUAL,
  targetUnion: { case: "modRevision" as const, value: rev },
});

/** Writes only if nobody changed the key since it was shown; a conflict opens the three-way merge, never an overwrite. */
async function save(): Promise<void> {
  if (!selected || !editor) return;
  const status = $("#editor-status");
  try {
    const value = await valueToSave(editor.text, $<HTMLSelectElement>("#format").value, selected);
    if (!value) {
      status.textContent = "not saved";
      return;
    }
    await write(selected, value, status);
  } catch (err) {
    showError(err);
  }
}

/** The compare-and-swap itself; on a conflict, what etcd holds now goes to the merge view. */
async function write(s: Selected, value: Uint8Array, status: HTMLElement): Promise<void> {
  const r = await kv.txn({
    compare: [modRevisionIs(s.key, s.modRevision)],
    success: [{ request: { case: "requestPut", value: { key: s.key, value } } }],
    failure: [{ request: { case: "requestRange", value: { key: s.key } } }],
  });
  if (r.succeeded) {
    closeSide();
    await openKey(text(s.key));
    status.className = "";
    status.textContent = `saved at revision ${r.header?.revision}`;
    return;
  }
  const now = r.responses[0]?.response.case === "responseRange" ? r.responses[0].response.value.kvs[0] : undefined;
  status.className = "conflict";
  status.textContent = now
    ? `Conflict: the key changed since you opened it (now revision ${now.modRevision}). Nothing was written: merge below, or reopen it.`
    : "Conflict: the key was deleted since you opened it. Nothing was written: saving the merge below creates it again.";
  await showConflict(s, text(value), now ? { value: now.value, modRevision: now.modRevision } : undefined);
}

/**
 * Base (what was opened), theirs (what etcd has now) and yours side by
 * side. Saving the merge is again a compare-and-swap, now on theirs: a
 * deleted key has modRevision 0, so the merge recreates it unless someone
 * else did first.
 */
async function showConflict(
  s: Selected,
  yours: string,
  theirs: { value: Uint8Array; modRevision: bigint } | undefined,
) {
  const { showMerge } = await loadEditor();
  closeSide();
  const language = languageOfFormat($<HTMLSelectElement>("#format").value);
  const panel = $("#merge");
  panel.hidden = false;
  const view = showMerge(
    $("#merge-base"),
    $("#merge-view"),
    { base: text(s.value), theirs: theirs ? text(theirs.value) : "", yours },
    language,
  );
  const save = $("#merge-save");
  const onSave = () => {
    const merged = bytes(view.merged());
    const next: Selected = {
      ...s,
      value: theirs?.value ?? new Uint8Array(),
      modRevision: theirs?.modRevision ?? 0n,
    };
    void write(next, merged, $("#editor-status")).catch(showError);
  };
  const onDiscard = () => {
    closeSide();
    void openKey(text(s.key));
  };
  save.addEventListener("click", onSave);
  $("#merge-discard").addEventListener("click", onDiscard);
  closeSideView = () => {
    save.removeEventListener("click", onSave);
    $("#merge-discard").removeEventListener("click", onDiscard);
    view.close();
    panel.hidden = true;
  };
}

function closeSide(): void {
  closeSideView?.();
  closeSideView = undefined;
}

/** Deletes the key if it is still as opened; true when it is gone. */
async function remove(): Promise<boolean> {
  if (!selected) return false;
  try {
    const r = await kv.txn({
      compare: [modRevisionIs(selected.key, selected.modRevision)],
      success: [{ request: { case: "requestDeleteRange", value: { key: selected.key } } }],
    });
    const status = $("#editor-status");
    if (!r.succeeded) {
      status.className = "conflict";
      status.textContent = "Conflict: the key changed since you opened it. Nothing was deleted.";
      return false;
    }
    $("#editor").hidden = true;
    return true;
  } catch (err) {
    showError(err);
    return false;
  }
}

/** Earlier values, read at the revision before each change, until etcd's history runs out; any two can be compared. */
async function history(): Promise<void> {
  if (!selected) return;
  const list = $("#history");
  list.replaceChildren();
  const versions: Array<{ modRevision: bigint; value: Uint8Array }> = [
    { modRevision: selected.modRevision, value: selected.value },
  ];
  let rev = selected.modRevision;
  for (let i = 0; i < 20 && rev > 1n; i++) {
    try {
      const r = await kv.range({ key: selected.key, revision: rev - 1n });
      const item = r.kvs[0];
      if (!item) break;
      list.append(el("li", {}, `revision ${item.modRevision}: ${text(item.value)}`));
      versions.push({ modRevision: item.modRevision, value: item.value });
      rev = item.modRevision;
    } catch {
      list.append(el("li", {}, "older revisions were compacted"));
      break;
    }
  }
  if (list.children.length === 0) list.append(el("li", {}, "no earlier value"));
  shownVersions = versions;
  const options = () =>
    versions.map((v, i) =>
      el("option", { value: String(i) }, `revision ${v.modRevision}${i === 0 ? " (current)" : ""}`),
    );
  $("#diff-a").replaceChildren(...options());
  $("#diff-b").replaceChildren(...options());
  $<HTMLSelectElement>("#diff-a").value = String(Math.min(1, versions.length - 1));
  $("#diff-picker").hidden = versions.length < 2;
}

/** The two picked revisions side by side, their differences marked. */
async function compareRevisions(): Promise<void> {
  const a = shownVersions[Number($<HTMLSelectElement>("#diff-a").value)];
  const b = shownVersions[Number($<HTMLSelectElement>("#diff-b").value)];
  if (!a || !b) return;
  const { showDiff, detectLanguage } = await loadEditor();
  closeSide();
  const language = detectLanguage(text(b.value));
  const panel = $("#diff");
  panel.hidden = false;
  $("#diff-caption").textContent = `revision ${a.modRevision} (left) and revision ${b.modRevision} (right)`;
  // JSON is compared pretty-printed, so a one-line value differs line by line, not as one line.
  const shown = (v: Uint8Array) => (language === "json" ? formatValue(v, "json") : text(v));
  const close = showDiff($("#diff-view"), shown(a.value), shown(b.value), language);
  closeSideView = () => {
    close();
    panel.hidden = true;
  };
}
