// Users, roles and the auth switch, through etcd's Auth service.
import { ConnectError } from "@connectrpc/connect";
import type { Permission } from "../../src/gen/etcd/api/authpb/auth_pb.js";
import { auth, bytes, prefixEnd, text } from "./client.js";
import { $, el, showError } from "./ui.js";

const ACCESS = ["read", "write", "readwrite"];

export function setupAuthAdmin(): void {
  const refresh = () => void load().catch(showError);
  document.addEventListener("tab", (e) => {
    if ((e as CustomEvent<string>).detail === "auth") refresh();
  });
  $("#auth-refresh").addEventListener("click", refresh);
  $("#auth-enable").addEventListener("click", () => {
    const ok = confirm(
      "Turn auth on?\n\nEvery call then needs a user whose roles allow it: anonymous reads and writes are refused, " +
        "this dashboard included until you log in. etcd needs a user named root; it is given the root role if it lacks it.",
    );
    if (ok) enableAuth().then(refresh, showError);
  });
  $("#auth-disable").addEventListener("click", () => {
    const ok = confirm("Turn auth off?\n\nEvery client may then read and write every key, whatever its user.");
    if (ok) auth.authDisable({}).then(refresh, showError);
  });
  onSubmit("#user-add", (data) =>
    auth.userAdd({ name: String(data.get("name")), password: String(data.get("password") ?? "") }),
  );
  onSubmit("#role-add", (data) => auth.roleAdd({ name: String(data.get("name")) }));
  onSubmit("#perm-grant", (data) => {
    const key = bytes(String(data.get("key")));
    const end = String(data.get("end") ?? "");
    const scope = String(data.get("scope"));
    const rangeEnd =
      scope === "prefix"
        ? prefixEnd(key)
        : scope === "range"
          ? end
            ? bytes(end)
            : new Uint8Array([0])
          : new Uint8Array();
    return auth.roleGrantPermission({
      name: String(data.get("role")),
      perm: { permType: Number(data.get("type")), key, rangeEnd },
    });
  });

  /** A form whose submit runs one Auth call, then shows the new state. */
  function onSubmit(selector: string, call: (data: FormData) => Promise<unknown>): void {
    const form = $<HTMLFormElement>(selector);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      call(new FormData(form)).then(() => {
        form.reset();
        refresh();
      }, showError);
    });
  }

  /** Users with their roles, roles with their permissions, and whether auth is on. */
  async function load(): Promise<void> {
    // AuthStatus came with etcd 3.5; 3.4 answers Unimplemented.
    const status = await auth.authStatus({}).then(
      (s) => (s.enabled ? "auth is on" : "auth is off"),
      () => "this etcd does not say whether auth is on",
    );
    $("#auth-state").textContent = status;
    const [{ users }, { roles }] = await Promise.all([auth.userList({}), auth.roleList({})]);
    const userRoles = await Promise.all(users.map((name) => auth.userGet({ name }).then((u) => u.roles)));
    const rolePerms = await Promise.all(roles.map((role) => auth.roleGet({ role }).then((r) => r.perm)));
    renderUsers(users, userRoles, roles);
    renderRoles(roles, rolePerms);
    const pick = $<HTMLSelectElement>("#perm-grant select[name=role]");
    pick.replaceChildren(...roles.map((r) => el("option", { value: r }, r)));
  }

  function renderUsers(users: string[], userRoles: string[][], roles: string[]): void {
    const rows = users.map((name, i) => {
      const held = userRoles[i]!.map((role) =>
        el(
          "span",
          { class: "chip" },
          role,
          button(`Revoke role ${role} from ${name}`, "×", () => auth.userRevokeRole({ name, role })),
        ),
      );
      const grantable = roles.filter((r) => !userRoles[i]!.includes(r));
      const pick = el(
        "select",
        { "aria-label": `Role to grant ${name}` },
        ...grantable.map((r) => el("option", {}, r)),
      );
      const grant = button(`Grant the role to ${name}`, "Grant role", () =>
        auth.userGrantRole({ user: name, role: (pick as HTMLSelectElement).value }),
      );
      const password = button(`Change the password of ${name}`, "Change password", () => {
        const next = prompt(`New password for ${name}`);
        return next === null ? Promise.resolve() : auth.userChangePassword({ name, password: next });
      });
      const remove = button(`Delete user ${name}`, "Delete", () =>
        confirm(`Delete user ${name}? Its tokens stop working at once.`)
          ? auth.userDelete({ name })
          : Promise.resolve(),
      );
      const actions = grantable.length ? [pick, grant, password, remove] : [password, remove];
      return el("tr", { "data-user": name }, el("td", {}, name), el("td", {}, ...held), el("td", {}, ...actions));
    });
    $("#user-table tbody").replaceChildren(...rows);
  }

  function renderRoles(roles: string[], rolePerms: Permission[][]): void {
    const rows = roles.map((role, i) => {
      const perms = rolePerms[i]!.map((p) =>
        el(
          "span",
          { class: "chip" },
          describe(p),
          button(`Revoke ${describe(p)} from ${role}`, "×", () =>
            auth.roleRevokePermission({ role, key: p.key, rangeEnd: p.rangeEnd }),
          ),
        ),
      );
      const remove = button(`Delete role ${role}`, "Delete", () =>
        confirm(`Delete role ${role}? Its users lose what it allowed at once.`)
          ? auth.roleDelete({ role })
          : Promise.resolve(),
      );
      return el("tr", { "data-role": role }, el("td", {}, role), el("td", {}, ...perms), el("td", {}, remove));
    });
    $("#role-table tbody").replaceChildren(...rows);
  }

  /** A button that runs one Auth call, then shows the new state. */
  function button(label: string, caption: string, call: () => Promise<unknown>): HTMLElement {
    const b = el("button", { type: "button", "aria-label": label }, caption);
    b.addEventListener("click", () => call().then(refresh, showError));
    return b;
  }
}

/** etcdctl's way: etcd turns auth on only when root holds the root role, so root gets it first. */
async function enableAuth(): Promise<void> {
  try {
    await auth.authEnable({});
  } catch (err) {
    if (!(err instanceof ConnectError) || !err.rawMessage.includes("root user does not have root role")) throw err;
    await auth.roleAdd({ name: "root" }).catch((e: unknown) => {
      if (!(e instanceof ConnectError) || !e.rawMessage.includes("role name already exists")) throw e;
    });
    await auth.userGrantRole({ user: "root", role: "root" });
    await auth.authEnable({});
  }
}

/** A permission in words: what access, on which keys. */
function describe(p: Permission): string {
  const access = ACCESS[p.permType] ?? String(p.permType);
  const key = text(p.key);
  if (p.rangeEnd.length === 0) return `${access} on ${key}`;
  if (p.rangeEnd.length === 1 && p.rangeEnd[0] === 0) return `${access} from ${key} on`;
  const end = prefixEnd(p.key);
  if (end.length === p.rangeEnd.length && end.every((b, i) => b === p.rangeEnd[i])) return `${access} on prefix ${key}`;
  return `${access} on [${key}, ${text(p.rangeEnd)})`;
}
