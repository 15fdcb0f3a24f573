// Keys: a tree of the flat keyspace, and an editor whose every write is a
// compare-and-swap on the revision the user saw.
import { Compare_CompareResult, Compare_CompareTarget } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { bytes, kv, prefixEnd, text } from "./client.js";
import { describeKubernetesObject, isKubernetesObject } from "./k8s.js";
import { $, el, showError } from "./ui.js";

const PAGE = 1000;

interface Selected {
  key: Uint8Array;
  value: Uint8Array;
  modRevision: bigint;
}

let selected: Selected | undefined;
/** Where browsing stands: pages of keys under a prefix, one page in the tree at a time. */
let browse: { prefix: Uint8Array; separator: string; starts: Uint8Array[]; next: Uint8Array | undefined } | undefined;

export function setupKeys(): void {
  $<HTMLFormElement>("#browse").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target as HTMLFormElement);
    void startBrowse(String(form.get("prefix") ?? ""), String(form.get("separator") ?? "/"));
  });
  $("#next").addEventListener("click", () => {
    if (!browse?.next) return;
    browse.starts.push(browse.next);
    void loadPage();
  });
  $("#prev").addEventListener("click", () => {
    if (!browse || browse.starts.length < 2) return;
    browse.starts.pop();
    void loadPage();
  });
  $<HTMLFormElement>("#create").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const data = new FormData(form);
    void createKey(String(data.get("key")), String(data.get("value") ?? "")).then((ok) => ok && form.reset());
  });
  $("#save").addEventListener("click", () => void save());
  $("#delete").addEventListener("click", () => void remove());
  $("#history-btn").addEventListener("click", () => void history());
  $<HTMLSelectElement>("#format").addEventListener("change", () => selected && render(selected));
  $("#bookmark").addEventListener("click", () => selected && toggleBookmark(text(selected.key)));
  $("#copy-key").addEventListener("click", () => selected && copy(text(selected.key), "key"));
  $("#copy-value").addEventListener("click", () => copy($<HTMLTextAreaElement>("#value").value, "value"));
  showBookmarks();
  void startBrowse("", "/");
}

/** Bookmarked keys, kept in this browser. */
export const bookmarks = (): string[] => JSON.parse(localStorage.getItem("etcd-bookmarks") ?? "[]") as string[];

function toggleBookmark(key: string): void {
  const marked = bookmarks();
  const next = marked.includes(key) ? marked.filter((k) => k !== key) : [...marked, key].sort();
  localStorage.setItem("etcd-bookmarks", JSON.stringify(next));
  showBookmarks();
  document.dispatchEvent(new CustomEvent("bookmarks"));
}

function showBookmarks(): void {
  const marked = bookmarks();
  $("#bookmarks").replaceChildren(
    ...marked.map((key) => {
      const item = el("li", { class: "leaf", "data-bookmark": key }, key);
      item.addEventListener("click", () => void open(key));
      return item;
    }),
  );
  if (selected) $("#bookmark").textContent = marked.includes(text(selected.key)) ? "Remove bookmark" : "Bookmark";
}

/** Copies `what` to the clipboard, saying so. */
function copy(what: string, name: string): void {
  navigator.clipboard.writeText(what).then(() => ($("#editor-status").textContent = `${name} copied`), showError);
}

async function startBrowse(prefix: string, separator: string): Promise<void> {
  const p = bytes(prefix);
  browse = { prefix: p, separator: separator || "/", starts: [p.length ? p : new Uint8Array([0])], next: undefined };
  await loadPage();
}

/**
 * The page starting at the last recorded start: keys only, 1,000 at a time,
 * so even a keyspace of 100k keys stays light in the browser.
 */
async function loadPage(): Promise<void> {
  if (!browse) return;
  try {
    const start = browse.starts.at(-1)!;
    const end = browse.prefix.length ? prefixEnd(browse.prefix) : new Uint8Array([0]);
    const r = await kv.range({ key: start, rangeEnd: end, keysOnly: true, limit: BigInt(PAGE), serializable: true });
    const last = r.kvs.at(-1)?.key;
    browse.next = r.more && last ? new Uint8Array([...last, 0]) : undefined;
    $<HTMLButtonElement>("#next").disabled = !browse.next;
    $<HTMLButtonElement>("#prev").disabled = browse.starts.length < 2;
    const first = (browse.starts.length - 1) * PAGE;
    // etcd counts from this page's start on; the pages before it are full.
    const total = first + Number(r.count);
    $("#page").textContent = r.kvs.length ? `keys ${first + 1}–${first + r.kvs.length} of ${total}` : "no keys";
    drawTree(
      r.kvs.map((item) => text(item.key)),
      browse.separator,
    );
  } catch (err) {
    showError(err);
  }
}

interface Node {
  children: Map<string, Node>;
  key?: string;
}

function drawTree(keys: string[], separator: string): void {
  const root: Node = { children: new Map() };
  for (const key of keys) {
    let node = root;
    const parts = key.split(separator);
    parts.forEach((part, i) => {
      const label = i < parts.length - 1 ? part + separator : part;
      let child = node.children.get(label);
      if (!child) node.children.set(label, (child = { children: new Map() }));
      node = child;
    });
    node.key = key;
  }
  const tree = $("#tree");
  tree.replaceChildren(...renderNodes(root, 0));
}

function renderNodes(node: Node, depth: number): HTMLElement[] {
  const out: HTMLElement[] = [];
  for (const [label, child] of node.children) {
    if (child.children.size === 0 && child.key !== undefined) {
      const leaf = el("a", { class: "leaf", "data-key": child.key, title: child.key }, label || "(empty)");
      leaf.addEventListener("click", () => void open(child.key!));
      out.push(leaf);
      continue;
    }
    const details = el("details", depth < 1 ? { open: "" } : {});
    details.append(el("summary", {}, label), ...renderNodes(child, depth + 1));
    if (child.key !== undefined) {
      const leaf = el("a", { class: "leaf", "data-key": child.key }, "(this key)");
      leaf.addEventListener("click", () => void open(child.key!));
      details.append(leaf);
    }
    out.push(details);
  }
  return out;
}

async function open(key: string): Promise<void> {
  try {
    const r = await kv.range({ key: bytes(key) });
    const item = r.kvs[0];
    if (!item) return showError(new Error(`${key} no longer exists`));
    selected = { key: item.key, value: item.value, modRevision: item.modRevision };
    for (const a of document.querySelectorAll(".leaf.selected")) a.classList.remove("selected");
    document.querySelector(`.leaf[data-key="${CSS.escape(key)}"]`)?.classList.add("selected");
    $("#editor").hidden = false;
    $("#editor-key").textContent = key;
    $("#editor-meta").textContent =
      `revision ${item.modRevision} (created at ${item.createRevision}), version ${item.version}` +
      (item.lease ? `, lease ${item.lease.toString(16)}` : "");
    $("#editor-status").textContent = "";
    $("#editor-status").className = "";
    $("#history").replaceChildren();
    showBookmarks();
    // Kubernetes' protobuf objects are shown decoded; anything else keeps the chosen view.
    const format = $<HTMLSelectElement>("#format");
    if (isKubernetesObject(item.value)) format.value = "kubernetes";
    else if (format.value === "kubernetes") format.value = "text";
    render(selected);
  } catch (err) {
    showError(err);
  }
}

function render(s: Selected): void {
  const format = $<HTMLSelectElement>("#format").value;
  const area = $<HTMLTextAreaElement>("#value");
  area.value = formatValue(s.value, format);
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

function parseValue(input: string, format: string): Uint8Array {
  switch (format) {
    case "json":
      return bytes(JSON.stringify(JSON.parse(input)));
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

/** Writes only if nobody changed the key since it was shown; a conflict is reported, never overwritten. */
async function save(): Promise<void> {
  if (!selected) return;
  const status = $("#editor-status");
  try {
    const value = parseValue($<HTMLTextAreaElement>("#value").value, $<HTMLSelectElement>("#format").value);
    const r = await kv.txn({
      compare: [modRevisionIs(selected.key, selected.modRevision)],
      success: [{ request: { case: "requestPut", value: { key: selected.key, value } } }],
      failure: [{ request: { case: "requestRange", value: { key: selected.key } } }],
    });
    if (r.succeeded) {
      status.className = "";
      status.textContent = `saved at revision ${r.header?.revision}`;
      await open(text(selected.key));
      status.textContent = `saved at revision ${r.header?.revision}`;
      return;
    }
    const now = r.responses[0]?.response.case === "responseRange" ? r.responses[0].response.value.kvs[0] : undefined;
    status.className = "conflict";
    status.textContent = now
      ? `Conflict: the key changed since you opened it (now revision ${now.modRevision}, value "${text(now.value)}"). Nothing was written; reopen it to edit the current value.`
      : "Conflict: the key was deleted since you opened it. Nothing was written.";
  } catch (err) {
    showError(err);
  }
}

async function remove(): Promise<void> {
  if (!selected) return;
  try {
    const r = await kv.txn({
      compare: [modRevisionIs(selected.key, selected.modRevision)],
      success: [{ request: { case: "requestDeleteRange", value: { key: selected.key } } }],
    });
    const status = $("#editor-status");
    if (!r.succeeded) {
      status.className = "conflict";
      status.textContent = "Conflict: the key changed since you opened it. Nothing was deleted.";
      return;
    }
    $("#editor").hidden = true;
    if (browse) await startBrowse(text(browse.prefix), browse.separator);
  } catch (err) {
    showError(err);
  }
}

async function createKey(key: string, value: string): Promise<boolean> {
  try {
    const k = bytes(key);
    // Only if it does not exist yet: its create revision is 0.
    const r = await kv.txn({
      compare: [
        {
          key: k,
          target: Compare_CompareTarget.CREATE,
          result: Compare_CompareResult.EQUAL,
          targetUnion: { case: "createRevision", value: 0n },
        },
      ],
      success: [{ request: { case: "requestPut", value: { key: k, value: bytes(value) } } }],
    });
    if (!r.succeeded) {
      showError(new Error(`${key} already exists`));
      return false;
    }
    if (browse) await startBrowse(text(browse.prefix), browse.separator);
    await open(key);
    return true;
  } catch (err) {
    showError(err);
    return false;
  }
}

/** Earlier values, read at the revision before each change, until etcd's history runs out. */
async function history(): Promise<void> {
  if (!selected) return;
  const list = $("#history");
  list.replaceChildren();
  let rev = selected.modRevision;
  for (let i = 0; i < 20 && rev > 1n; i++) {
    try {
      const r = await kv.range({ key: selected.key, revision: rev - 1n });
      const item = r.kvs[0];
      if (!item) break;
      list.append(el("li", {}, `revision ${item.modRevision}: ${text(item.value)}`));
      rev = item.modRevision;
    } catch {
      list.append(el("li", {}, "older revisions were compacted"));
      break;
    }
  }
  if (list.children.length === 0) list.append(el("li", {}, "no earlier value"));
}
