// Export a prefix to a JSON file, and import one: a dry run first, then
// Txn batches with a progress bar.
import { kv, pagesUnder } from "./client.js";
import { $, el, showError } from "./ui.js";

/** One key of an export file: text where it is UTF-8, else base64 (said by the encoding field). */
interface Entry {
  key: string;
  value: string;
  keyEncoding?: "base64";
  valueEncoding?: "base64";
}

interface ExportFile {
  /** What made it, so a file from elsewhere is recognised. */
  format: "etcd-connect-proxy export 1";
  prefix: string;
  /** The store revision the keys were read at. */
  revision: string;
  keys: Entry[];
}

/** Keys per read while exporting, and puts per Txn while importing (etcd allows 128 operations per Txn). */
const EXPORT_PAGE = 1000;
const IMPORT_BATCH = 100;

export function setupTransfer(): void {
  $("#export").addEventListener("click", () => void exportPrefix().catch(showError));
  $<HTMLInputElement>("#import-file").addEventListener("change", () => void dryRun().catch(showError));
  $("#import-run").addEventListener("click", () => void runImport().catch(showError));
}

const currentPrefix = () => String(new FormData($<HTMLFormElement>("#browse")).get("prefix") ?? "");

/** Every key under the prefix in the browse box, read at one revision, as a file download. */
async function exportPrefix(): Promise<void> {
  const keys: Entry[] = [];
  let revision = 0n;
  for await (const page of pagesUnder(new TextEncoder().encode(currentPrefix()), { pageSize: EXPORT_PAGE })) {
    if (revision === 0n) revision = page.header!.revision; // later pages answer with the current revision
    for (const kvp of page.kvs) keys.push(entryOf(kvp.key, kvp.value));
    $("#transfer-state").textContent = `exported ${keys.length} keys…`;
  }
  const file: ExportFile = {
    format: "etcd-connect-proxy export 1",
    prefix: currentPrefix(),
    revision: revision.toString(),
    keys,
  };
  const blob = new Blob([JSON.stringify(file, null, 1)], { type: "application/json" });
  const a = el("a", { href: URL.createObjectURL(blob), download: `etcd-export-${revision}.json` }) as HTMLAnchorElement;
  a.click();
  URL.revokeObjectURL(a.href);
  $("#transfer-state").textContent = `exported ${keys.length} keys at revision ${revision}`;
}

let pending: Array<{ key: Uint8Array; value: Uint8Array }> | undefined;

/** Reads the chosen file and says what importing it would do, writing nothing. */
async function dryRun(): Promise<void> {
  pending = undefined;
  $<HTMLButtonElement>("#import-run").disabled = true;
  const input = $<HTMLInputElement>("#import-file");
  const chosen = input.files?.[0];
  if (!chosen) return;
  const file = JSON.parse(await chosen.text()) as Partial<ExportFile>;
  if (file.format !== "etcd-connect-proxy export 1" || !Array.isArray(file.keys)) {
    throw new Error(`${chosen.name} is not an export of this dashboard`);
  }
  const entries = file.keys.map((e) => ({
    key: decode(e.key, e.keyEncoding),
    value: decode(e.value, e.valueEncoding),
  }));
  // Which keys exist now, and which hold the same value: reads of each key, a batch per Txn.
  let added = 0;
  let changed = 0;
  let same = 0;
  for (let at = 0; at < entries.length; at += IMPORT_BATCH) {
    const batch = entries.slice(at, at + IMPORT_BATCH);
    const r = await kv.txn({
      success: batch.map((e) => ({ request: { case: "requestRange" as const, value: { key: e.key } } })),
    });
    r.responses.forEach((resp, i) => {
      const now = resp.response.case === "responseRange" ? resp.response.value.kvs[0] : undefined;
      if (!now) added++;
      else if (equal(now.value, batch[i]!.value)) same++;
      else changed++;
    });
  }
  pending = entries;
  $<HTMLButtonElement>("#import-run").disabled = entries.length === 0;
  $("#transfer-state").textContent =
    `dry run: ${entries.length} keys in ${chosen.name}: ${added} new, ${changed} would change, ${same} unchanged; nothing written yet`;
}

/** Writes the dry-run file in Txn batches, with progress. */
async function runImport(): Promise<void> {
  const entries = pending;
  if (!entries) return;
  const bar = $<HTMLProgressElement>("#import-progress");
  bar.max = entries.length;
  bar.value = 0;
  bar.hidden = false;
  $<HTMLButtonElement>("#import-run").disabled = true;
  for (let at = 0; at < entries.length; at += IMPORT_BATCH) {
    const batch = entries.slice(at, at + IMPORT_BATCH);
    await kv.txn({
      success: batch.map((e) => ({ request: { case: "requestPut" as const, value: { key: e.key, value: e.value } } })),
    });
    bar.value = Math.min(entries.length, at + batch.length);
    $("#transfer-state").textContent = `imported ${bar.value} of ${entries.length} keys…`;
  }
  pending = undefined;
  $("#transfer-state").textContent = `imported ${entries.length} keys`;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function entryOf(key: Uint8Array, value: Uint8Array): Entry {
  const entry: Entry = { key: "", value: "" };
  const k = asText(key);
  const v = asText(value);
  if (k === undefined) [entry.key, entry.keyEncoding] = [base64(key), "base64"];
  else entry.key = k;
  if (v === undefined) [entry.value, entry.valueEncoding] = [base64(value), "base64"];
  else entry.value = v;
  return entry;
}

function asText(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function decode(text: string, encoding: "base64" | undefined): Uint8Array {
  if (encoding === "base64") return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new TextEncoder().encode(text);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
