// Small DOM helpers; the dashboard has no framework.
import { ConnectError } from "@connectrpc/connect";

export function $<T extends HTMLElement = HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`missing element ${selector}`);
  return found;
}

/** Text that reorders what is shown around it: bidi embeddings, overrides, isolates and marks. */
export const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from etcd as it is, with its bidi controls written out (`\u202E`)
 * rather than obeyed: a key named "rtl-\u202Egnp.exe" must not pass for
 * "rtl-exe.png".
 */
export function visible(text: string): string {
  return text.replace(BIDI_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`);
}

/** An element; its text children are shown `visible`, since most of them come from etcd. */
export function el(tag: string, attrs: Record<string, string> = {}, ...children: Array<string | Node>): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children.map((child) => (typeof child === "string" ? visible(child) : child)));
  return e;
}

/** Shows an error etcd (or the proxy) gave, in etcd's words. */
export function showError(err: unknown): void {
  const box = $("#error");
  box.textContent = visible(err instanceof ConnectError ? err.rawMessage : String((err as Error).message ?? err));
  box.hidden = false;
  setTimeout(() => (box.hidden = true), 8000);
}

/** A key in a list: opened by a click, or by Enter or Space once the keyboard reaches it. */
export function keyLink(tag: string, attrs: Record<string, string>, caption: string, onOpen: () => void): HTMLElement {
  const link = el(tag, { class: "leaf", role: "link", tabindex: "0", ...attrs }, caption);
  link.addEventListener("click", onOpen);
  link.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" && e.key !== " ") return;
    e.preventDefault();
    onOpen();
  });
  return link;
}

/** `run`, once `ms` have passed without another call: typing and resizing settle before the work. */
export function debounce(run: () => void, ms: number): () => void {
  let pending: ReturnType<typeof setTimeout> | undefined;
  return () => {
    clearTimeout(pending);
    pending = setTimeout(run, ms);
  };
}
