// Bookmarked keys, kept in this browser; a change is announced with a
// "bookmarks" event on the document.

/** The bookmarked keys, sorted. */
export const bookmarks = (): string[] => JSON.parse(localStorage.getItem("etcd-bookmarks") ?? "[]") as string[];

/** Bookmarks `key`, or takes its bookmark away. */
export function toggleBookmark(key: string): void {
  const marked = bookmarks();
  const next = marked.includes(key) ? marked.filter((k) => k !== key) : [...marked, key].sort();
  localStorage.setItem("etcd-bookmarks", JSON.stringify(next));
  document.dispatchEvent(new CustomEvent("bookmarks"));
}
