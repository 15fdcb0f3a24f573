// Finding keys: a search by substring, which etcd cannot do, over pages of
// keys only (the first matches show while the scan goes on, and a new
// search stops the last); and key path completion, which asks etcd for one
// key per suggestion and jumps over everything under it.
import { bytes, kv, pagesUnder, prefixEnd, text } from "./client.js";
import { $, debounce, el, keyLink, showError, visible } from "./ui.js";

/** Keys per page of the scan: large pages, because only keys travel. */
const SCAN_PAGE = 5000;
/** Matches listed; the count goes on. */
const SHOWN = 200;
const SUGGESTIONS = 20;

export function setupSearch(open: (key: string) => void): void {
  let running: AbortController | undefined;
  const form = $<HTMLFormElement>("#search");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    running?.abort();
    running = new AbortController();
    const data = new FormData(form);
    void search(String(data.get("contains") ?? ""), prefixBox(), open, running.signal).catch((err) => {
      if (!running?.signal.aborted) showError(err);
    });
  });

  const prefix = $<HTMLInputElement>("#browse input[name=prefix]");
  // Suggestions are a convenience: a refusal (a prefix the user may not read) just offers none.
  prefix.addEventListener(
    "input",
    debounce(() => {
      // Only the newest completion may write: an older one, slower (more keys to step over), would
      // otherwise replace the suggestions for what is typed now with those for what was typed before.
      const mine = ++completions;
      const show = (suggestions: string[]) => {
        if (mine === completions) $("#paths").replaceChildren(...suggestions.map((s) => el("option", { value: s })));
      };
      void complete(prefix.value, separatorBox()).then(show, () => show([]));
    }, 150),
  );
}

/** Completions begun: each knows whether a newer one has begun since. */
let completions = 0;

const prefixBox = () => $<HTMLInputElement>("#browse input[name=prefix]").value;
const separatorBox = () => $<HTMLInputElement>("#browse input[name=separator]").value || "/";

async function search(needle: string, prefix: string, open: (key: string) => void, signal: AbortSignal) {
  const state = $("#search-state");
  const list = $("#search-results");
  list.replaceChildren();
  if (!needle) {
    state.textContent = "";
    return;
  }
  const started = performance.now();
  const lower = needle.toLowerCase();
  let scanned = 0;
  let found = 0;
  for await (const page of pagesUnder(bytes(prefix), { pageSize: SCAN_PAGE, keysOnly: true, signal })) {
    for (const { key } of page.kvs) {
      const name = text(key);
      if (!name.toLowerCase().includes(lower)) continue;
      found++;
      if (found > SHOWN) continue;
      list.append(keyLink("li", { "data-key": name }, name, () => open(name)));
    }
    scanned += page.kvs.length;
    state.textContent = visible(`${found} keys contain "${needle}" among ${scanned} scanned…`);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  state.textContent = visible(
    `${found} keys contain "${needle}" among ${scanned}${prefix ? ` under ${prefix}` : ""} (${seconds} s)` +
      (found > SHOWN ? `; the first ${SHOWN} are listed` : ""),
  );
}

/**
 * The next path segments after what is typed: one read of one key per
 * suggestion, then a jump past every key under it, so a prefix with 100k
 * keys below costs as many reads as suggestions.
 */
async function complete(typed: string, separator: string): Promise<string[]> {
  const base = bytes(typed);
  const sep = bytes(separator);
  const end = base.length ? prefixEnd(base) : new Uint8Array([0]);
  let from = base.length ? base : new Uint8Array([0]);
  const suggestions: string[] = [];
  while (suggestions.length < SUGGESTIONS) {
    const r = await kv.range({ key: from, rangeEnd: end, limit: 1n, keysOnly: true, serializable: true });
    const key = r.kvs[0]?.key;
    if (!key) break;
    const cut = indexOf(key, sep, base.length);
    if (cut < 0) {
      suggestions.push(text(key));
      from = new Uint8Array([...key, 0]);
    } else {
      const segment = key.subarray(0, cut + sep.length);
      suggestions.push(text(segment));
      from = prefixEnd(segment);
      if (from.length === 1 && from[0] === 0) break; // nothing sorts after the segment
    }
  }
  return suggestions;
}

/** Where `needle` first occurs in `hay` at or after `start`; -1 if nowhere. */
function indexOf(hay: Uint8Array, needle: Uint8Array, start: number): number {
  outer: for (let i = start; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
