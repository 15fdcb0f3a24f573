// Small DOM helpers; the dashboard has no framework.
import { ConnectError } from "@connectrpc/connect";

export function $<T extends HTMLElement = HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`missing element ${selector}`);
  return found;
}

export function el(tag: string, attrs: Record<string, string> = {}, ...children: Array<string | Node>): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** Shows an error etcd (or the proxy) gave, in etcd's words. */
export function showError(err: unknown): void {
  const box = $("#error");
  box.textContent = err instanceof ConnectError ? err.rawMessage : String((err as Error).message ?? err);
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
