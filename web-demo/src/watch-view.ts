// The live watch (the proxy's server-streaming watch for browsers): events
// under a prefix, filtered as the user asks, paused and resumed, exported;
// and a notification on every change to a bookmarked key.
import { Event_EventType } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { bytes, prefixEnd, text, watchService } from "./client.js";
import { bookmarks } from "./bookmarks.js";
import { $, el, showError, visible } from "./ui.js";

/** Events the page keeps (the oldest go first), and how many of the newest it lists. */
const MAX_SEEN = 10_000;
const MAX_LISTED = 500;

/** One event as the page saw it. */
interface Seen {
  type: "PUT" | "DELETE";
  key: string;
  value: string;
  revision: string;
}

export function setupWatch(): void {
  let abort: AbortController | undefined;
  let paused = false;
  const seen: Seen[] = [];
  const events = $("#events");
  const state = $("#watch-state");
  const filter = $<HTMLFormElement>("#watch-filter");

  const shown = (e: Seen) => {
    const f = new FormData(filter);
    const pattern = String(f.get("pattern") ?? "");
    if (e.type === "PUT" ? f.get("puts") !== "on" : f.get("deletes") !== "on") return false;
    return pattern === "" || e.key.includes(pattern);
  };
  const line = (e: Seen) =>
    el("li", { class: e.type }, `${e.type} ${e.key}${e.type === "PUT" ? ` = ${e.value}` : ""} @${e.revision}`);
  /** The list, newest first, as the filters and the pause say now. */
  let shownUpTo = 0;
  const redraw = () => {
    if (seen.length > MAX_SEEN) {
      const dropped = seen.length - MAX_SEEN;
      seen.splice(0, dropped);
      shownUpTo = Math.max(0, shownUpTo - dropped);
    }
    if (!paused) shownUpTo = seen.length;
    const visible = seen.slice(0, shownUpTo).filter(shown);
    events.replaceChildren(...visible.slice(-MAX_LISTED).reverse().map(line));
    const hidden = shownUpTo - visible.length;
    events.dataset["hidden"] = String(hidden);
    const held = seen.length - shownUpTo;
    $("#watch-filter-state").textContent =
      `${hidden} hidden by the filters` + (held ? `, ${held} held while paused` : "");
  };
  filter.addEventListener("input", redraw);
  filter.addEventListener("change", redraw);

  $<HTMLFormElement>("#watch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    abort?.abort();
    const form = new FormData(e.target as HTMLFormElement);
    const prefix = bytes(String(form.get("prefix") ?? ""));
    const controller = new AbortController();
    abort = controller;
    seen.length = 0;
    shownUpTo = 0;
    redraw();
    $<HTMLButtonElement>("#watch-stop").disabled = false;
    $<HTMLButtonElement>("#watch-pause").disabled = false;
    state.textContent = "connecting…";
    void (async () => {
      try {
        const stream = watchService.watch(
          {
            watches: [
              {
                key: prefix.length ? prefix : new Uint8Array([0]),
                rangeEnd: prefix.length ? prefixEnd(prefix) : new Uint8Array([0]),
                prevKv: form.get("prevKv") === "on",
              },
            ],
          },
          { signal: controller.signal },
        );
        for await (const r of stream) {
          if (r.created) state.textContent = `watching from revision ${r.header?.revision}`;
          if (r.canceled) state.textContent = `canceled: ${r.cancelReason || "compacted"}`;
          for (const ev of r.events) {
            const type = ev.type === Event_EventType.DELETE ? "DELETE" : "PUT";
            const kv = ev.kv!;
            seen.push({ type, key: text(kv.key), value: text(kv.value), revision: kv.modRevision.toString() });
          }
          if (r.events.length) redraw();
        }
      } catch (err) {
        if (!controller.signal.aborted) showError(err);
      }
    })();
  });
  $("#watch-stop").addEventListener("click", () => {
    abort?.abort();
    state.textContent = "stopped";
  });
  $("#watch-pause").addEventListener("click", () => {
    paused = !paused;
    $("#watch-pause").textContent = paused ? "Resume" : "Pause";
    redraw();
  });
  $("#watch-export").addEventListener("click", () => {
    // What the user sees: the filtered events, oldest first.
    const lines = seen.slice(0, shownUpTo).filter(shown);
    const blob = new Blob([lines.map((e) => JSON.stringify(e)).join("\n") + "\n"], { type: "application/x-ndjson" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "etcd-watch-events.ndjson" }) as HTMLAnchorElement;
    a.click();
    URL.revokeObjectURL(a.href);
  });
  setupBookmarkNotifications();
}

/**
 * Once the user asks and the browser allows it: one watch over every
 * bookmarked key, a desktop notification for each change, and a list of them
 * on the page (the notifications' own record).
 */
function setupBookmarkNotifications(): void {
  let abort: AbortController | undefined;
  const status = $("#notify-state");
  const start = () => {
    abort?.abort();
    const keys = bookmarks();
    if (keys.length === 0) return void (status.textContent = "no bookmarked keys yet (bookmark one on the Keys page)");
    const controller = new AbortController();
    abort = controller;
    status.textContent = `notifying on changes to ${keys.length} bookmarked key${keys.length > 1 ? "s" : ""}`;
    void (async () => {
      try {
        const stream = watchService.watch(
          { watches: keys.map((k) => ({ key: bytes(k), rangeEnd: new Uint8Array() })) },
          { signal: controller.signal },
        );
        for await (const r of stream) {
          for (const ev of r.events) {
            const what = `${ev.type === Event_EventType.DELETE ? "deleted" : "changed"}: ${text(ev.kv!.key)}`;
            try {
              new Notification("etcd", { body: visible(what) });
            } catch {
              // some browsers allow notifications only from a service worker: the list below still says it
            }
            $("#notified").prepend(el("li", {}, `${what} @${ev.kv!.modRevision}`));
          }
        }
      } catch (err) {
        if (!controller.signal.aborted) showError(err);
      }
    })();
  };
  $("#notify").addEventListener("click", () => {
    if (!("Notification" in window)) return void (status.textContent = "this browser has no notifications");
    void Notification.requestPermission().then((permission) => {
      if (permission === "granted") start();
      else status.textContent = "the browser does not allow notifications from this page";
    });
  });
  // New bookmarks join the watch.
  document.addEventListener("bookmarks", () => abort && start());
}
