// The value editor (CodeMirror 6): highlighting and lint marks for JSON,
// YAML and TOML, a side-by-side diff of two texts, and the three-way view
// of a write conflict. Loaded on demand: the first page needs none of it.
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { json } from "@codemirror/lang-json";
import { yaml } from "@codemirror/lang-yaml";
import { HighlightStyle, StreamLanguage, syntaxHighlighting, type LanguageSupport } from "@codemirror/language";
import { toml } from "@codemirror/legacy-modes/mode/toml";
import { linter, lintGutter, type Diagnostic } from "@codemirror/lint";
import { MergeView } from "@codemirror/merge";
import { Compartment, EditorState, type Extension } from "@codemirror/state";
import { EditorView, highlightSpecialChars, keymap, lineNumbers } from "@codemirror/view";
import { tags } from "@lezer/highlight";
import { problemOf, type Language } from "./documents.js";
import { BIDI_CONTROLS, visible } from "./ui.js";

// The document checks load with the editor; the keys page reaches them here.
export { detectLanguage, LANGUAGE_NAMES, problemOf } from "./documents.js";

/** Token colours from the page's palette, so both themes read well. */
const highlight = HighlightStyle.define([
  { tag: [tags.string, tags.special(tags.string)], color: "var(--code-string)" },
  { tag: [tags.number, tags.bool, tags.null, tags.atom], color: "var(--code-literal)" },
  { tag: [tags.propertyName, tags.definition(tags.propertyName), tags.labelName], color: "var(--code-key)" },
  { tag: [tags.comment, tags.lineComment], color: "var(--code-comment)", fontStyle: "italic" },
  { tag: [tags.heading, tags.typeName, tags.meta], color: "var(--code-heading)", fontWeight: "600" },
  { tag: [tags.punctuation, tags.separator, tags.bracket], color: "var(--code-punctuation)" },
]);

/** Bidi controls in a value are shown as their escapes (U+202E as `\u202E`), never obeyed; the text keeps them. */
const bidiShown = highlightSpecialChars({
  addSpecialChars: new RegExp(BIDI_CONTROLS.source),
  render: (code, description, placeholder) => {
    const mark = document.createElement("span");
    mark.className = "cm-specialChar";
    const char = String.fromCharCode(code);
    mark.textContent = visible(char) !== char ? visible(char) : placeholder;
    if (description) mark.title = description;
    return mark;
  },
});

/** The nonce the page was served with: the Content-Security-Policy admits the editor's <style> elements by it. */
const styleNonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? "";

const base: Extension = [
  EditorView.cspNonce.of(styleNonce),
  syntaxHighlighting(highlight),
  bidiShown,
  EditorView.lineWrapping,
  EditorView.theme({ "&": { backgroundColor: "var(--surface)", color: "var(--ink)" } }),
];

function languageOf(language: Language): LanguageSupport | Extension {
  switch (language) {
    case "json":
      return json();
    case "yaml":
      return yaml();
    case "toml":
      return StreamLanguage.define(toml);
    default:
      return [];
  }
}

/** Lint marks from the same check that guards saving. */
function lintFor(language: Language): Extension {
  if (language === "text") return [];
  return [
    lintGutter(),
    linter(
      (view): Diagnostic[] => {
        const problem = problemOf(view.state.doc.toString(), language);
        return problem ? [{ ...problem, severity: "error" }] : [];
      },
      { delay: 250 },
    ),
  ];
}

/** The key's value, editable, in one language at a time. */
export class ValueEditor {
  private readonly view: EditorView;
  private readonly mode = new Compartment();
  private readonly writable = new Compartment();

  constructor(parent: HTMLElement, onChange: () => void) {
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        extensions: [
          base,
          lineNumbers(),
          history(),
          keymap.of([...defaultKeymap, ...historyKeymap]),
          this.mode.of([]),
          this.writable.of([]),
          EditorView.contentAttributes.of({ "aria-label": "value" }),
          EditorView.updateListener.of((u) => u.docChanged && onChange()),
        ],
      }),
    });
  }

  get text(): string {
    return this.view.state.doc.toString();
  }

  show(text: string, language: Language, readOnly: boolean): void {
    this.view.dispatch({
      changes: { from: 0, to: this.view.state.doc.length, insert: text },
      effects: [
        this.mode.reconfigure([languageOf(language), lintFor(language)]),
        this.writable.reconfigure([EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)]),
      ],
    });
  }
}

function readOnly(language: Language): Extension[] {
  return [base, languageOf(language), EditorState.readOnly.of(true), EditorView.editable.of(false)];
}

/** Two texts side by side, their differences marked; both read-only. */
export function showDiff(parent: HTMLElement, a: string, b: string, language: Language): () => void {
  const view = new MergeView({
    parent,
    a: { doc: a, extensions: readOnly(language) },
    b: { doc: b, extensions: readOnly(language) },
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
  return () => view.destroy();
}

/**
 * A conflict's three texts: the base (what was opened), theirs (what etcd
 * has now) beside yours (editable, with arrows that take their chunks).
 * Returns the merged text on demand.
 */
export function showMerge(
  baseParent: HTMLElement,
  parent: HTMLElement,
  texts: { base: string; theirs: string; yours: string },
  language: Language,
): { merged(): string; close(): void } {
  const baseView = new EditorView({ parent: baseParent, doc: texts.base, extensions: readOnly(language) });
  const view = new MergeView({
    parent,
    a: { doc: texts.theirs, extensions: readOnly(language) },
    b: {
      doc: texts.yours,
      extensions: [
        base,
        languageOf(language),
        lintFor(language),
        history(),
        keymap.of([...defaultKeymap, ...historyKeymap]),
      ],
    },
    revertControls: "a-to-b",
  });
  return {
    merged: () => view.b.state.doc.toString(),
    close: () => {
      view.destroy();
      baseView.destroy();
    },
  };
}
