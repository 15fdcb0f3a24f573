// The dashboard: served by the proxy at /, talking to it over Connect.
import { setupAuthAdmin } from "./auth-admin.js";
import { auth, loggedIn, setToken } from "./client.js";
import { setupKeys } from "./keys.js";
import { setupMaintenance } from "./maintenance.js";
import { setupTransfer } from "./transfer.js";
import { setupCluster, setupLeases, setupProxy } from "./panels.js";
import { setupWatch } from "./watch-view.js";
import { $, showError, visible } from "./ui.js";

function setupTabs(): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>("#tabs button")) {
    button.addEventListener("click", () => {
      const tab = button.dataset["tab"]!;
      for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b === button);
      for (const s of document.querySelectorAll<HTMLElement>("section.tab")) s.hidden = s.id !== tab;
      document.dispatchEvent(new CustomEvent("tab", { detail: tab }));
    });
  }
}

/** Login for clusters with auth on: etcd's Authenticate, then the token rides on every call. */
function setupLogin(): void {
  const form = $<HTMLFormElement>("#login");
  const who = $("#who");
  const logout = $("#logout");
  const show = (name?: string) => {
    who.textContent = name ? `logged in as ${visible(name)}` : loggedIn() ? "logged in" : "not logged in";
    logout.hidden = !loggedIn();
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const name = String(data.get("user"));
    auth.authenticate({ name, password: String(data.get("password")) }).then((r) => {
      setToken(r.token);
      show(name);
      form.reset();
    }, showError);
  });
  logout.addEventListener("click", () => {
    setToken(undefined);
    show();
  });
  show();
}

/** Light, dark, or the system's choice (the default); kept in the browser. */
function setupTheme(): void {
  const button = $<HTMLButtonElement>("#theme");
  const themes = ["system", "light", "dark"] as const;
  const apply = (theme: string) => {
    if (theme === "system") delete document.documentElement.dataset["theme"];
    else document.documentElement.dataset["theme"] = theme;
    button.textContent = `theme: ${theme}`;
    document.dispatchEvent(new CustomEvent("theme"));
  };
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () =>
    document.dispatchEvent(new CustomEvent("theme")),
  );
  let current = localStorage.getItem("etcd-theme") ?? "system";
  apply(current);
  button.addEventListener("click", () => {
    current = themes[(themes.indexOf(current as (typeof themes)[number]) + 1) % themes.length]!;
    localStorage.setItem("etcd-theme", current);
    apply(current);
  });
}

setupTheme();
setupTabs();
setupLogin();
setupKeys();
setupTransfer();
setupWatch();
setupLeases();
setupCluster();
setupProxy();
setupAuthAdmin();
setupMaintenance();
