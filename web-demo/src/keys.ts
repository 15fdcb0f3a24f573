// Keys: a tree of the flat keyspace, a page at a time, with search, path
// completion, bookmarks and new keys; a key opens in the key view.
import { Compare_CompareResult, Compare_CompareTarget } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { bookmarks } from "./bookmarks.js";
import { bytes, kv, prefixEnd, text } from "./client.js";
import { openKey, setupKeyView } from "./key-view.js";
import { setupSearch } from "./search.js";
import { $, el, keyLink, showError } from "./ui.js";

const PAGE = 1000;

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
  setupKeyView(() => browse && void startBrowse(text(browse.prefix), browse.separator));
  document.addEventListener("bookmarks", showBookmarks);
  setupSearch((key) => void openKey(key));
  showBookmarks();
  void startBrowse("", "/");
}

function showBookmarks(): void {
  $("#bookmarks").replaceChildren(
    ...bookmarks().map((key) => keyLink("li", { "data-bookmark": key }, key, () => void openKey(key))),
  );
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
      out.push(
        keyLink("a", { "data-key": child.key, title: child.key }, label || "(empty)", () => void openKey(child.key!)),
      );
      continue;
    }
    const details = el("details", depth < 1 ? { open: "" } : {});
    details.append(el("summary", {}, label), ...renderNodes(child, depth + 1));
    if (child.key !== undefined) {
      details.append(keyLink("a", { "data-key": child.key }, "(this key)", () => void openKey(child.key!)));
    }
    out.push(details);
  }
  return out;
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
    await openKey(key);
    return true;
  } catch (err) {
    showError(err);
    return false;
  }
}
