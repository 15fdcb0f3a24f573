// Maintenance through the proxy: compaction, a snapshot download, alarms,
// and the cluster's members. Every destructive action asks first and says
// what it does.
import { AlarmRequest_AlarmAction, AlarmType, type Member } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { cluster, kv, maintenance, watchService } from "./client.js";
import { $, el, showError } from "./ui.js";

/** How long a watch from revision 1 is given to be cancelled for compaction before "nothing compacted" is believed. */
const COMPACTION_PROBE_MS = 500;

export function setupMaintenance(): void {
  const refresh = () => void load().catch(showError);
  document.addEventListener("tab", (e) => {
    if ((e as CustomEvent<string>).detail === "maintenance") refresh();
  });

  const compact = $<HTMLFormElement>("#compact");
  compact.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(compact);
    const revision = BigInt(String(data.get("revision")));
    const ok = confirm(
      `Compact up to revision ${revision}?\n\nEvery key's history before it is gone for good: ` +
        "reads and watches from an older revision are refused, and such watches are cancelled.",
    );
    if (!ok) return;
    kv.compact({ revision, physical: data.get("physical") === "on" }).then(refresh, showError);
  });

  $("#snapshot").addEventListener("click", () => void snapshot().catch(showError));

  const add = $<HTMLFormElement>("#member-add");
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(add);
    const peer = String(data.get("peer"));
    const isLearner = data.get("learner") === "on";
    const ok = confirm(
      `Add ${isLearner ? "a learner" : "a voting member"} at ${peer}?\n\n` +
        (isLearner
          ? "It receives the log but does not vote until promoted."
          : "It counts toward quorum at once: until it is started and in sync, the cluster tolerates one failure less."),
    );
    if (!ok) return;
    cluster.memberAdd({ peerURLs: [peer], isLearner }).then(() => {
      add.reset();
      refresh();
    }, showError);
  });
}

async function load(): Promise<void> {
  const [{ header }, compacted, { members }, { alarms }] = await Promise.all([
    kv.range({ key: new Uint8Array([0]), countOnly: true }),
    compactedRevision(),
    cluster.memberList({}),
    maintenance.alarm({ action: AlarmRequest_AlarmAction.GET }),
  ]);
  const current = header!.revision;
  $("#compact-info").textContent =
    `current revision ${current}, ` + (compacted ? `compacted up to ${compacted}` : "nothing compacted yet");
  const input = $<HTMLInputElement>("#compact input[name=revision]");
  input.max = String(current);
  if (!input.value) input.value = String(current);

  $("#alarm-list").replaceChildren(
    ...(alarms.length
      ? alarms.map((a) => {
          const name = AlarmType[a.alarm] ?? String(a.alarm);
          const disarm = el(
            "button",
            { type: "button", "aria-label": `Disarm ${name} on ${a.memberID.toString(16)}` },
            "Disarm",
          );
          disarm.addEventListener("click", () => {
            if (!confirm(`Disarm ${name} on member ${a.memberID.toString(16)}? Do it only once its cause is gone.`))
              return;
            maintenance
              .alarm({ action: AlarmRequest_AlarmAction.DEACTIVATE, memberID: a.memberID, alarm: a.alarm })
              .then(() => void load().catch(showError), showError);
          });
          return el("li", {}, `${name} on member ${a.memberID.toString(16)} `, disarm);
        })
      : [el("li", {}, "none")]),
  );
  $("#member-table tbody").replaceChildren(...members.map(memberRow));
}

function memberRow(m: Member): HTMLElement {
  const id = m.ID.toString(16);
  const reload = () => void load().catch(showError);
  const act = (caption: string, label: string, question: string, call: () => Promise<unknown>) => {
    const b = el("button", { type: "button", "aria-label": label }, caption);
    b.addEventListener("click", () => {
      if (confirm(question)) call().then(reload, showError);
    });
    return b;
  };
  const actions = [
    act(
      "Remove",
      `Remove member ${id}`,
      `Remove member ${id} (${m.name || "unstarted"})?\n\nIt leaves the cluster for good; its data cannot rejoin.`,
      () => cluster.memberRemove({ ID: m.ID }),
    ),
  ];
  if (m.isLearner) {
    actions.unshift(
      act("Promote", `Promote member ${id}`, `Promote learner ${id} to a voting member?`, () =>
        cluster.memberPromote({ ID: m.ID }),
      ),
    );
  } else {
    actions.unshift(
      act("Make leader", `Make member ${id} the leader`, `Move leadership to member ${id}?`, () =>
        maintenance.moveLeader({ targetID: m.ID }),
      ),
    );
  }
  const update = el("button", { type: "button", "aria-label": `Change the peer URLs of ${id}` }, "Peer URLs");
  update.addEventListener("click", () => {
    // etcd's MemberUpdate replaces the member's raft attributes whole, learner flag included (3.4 to 3.6).
    if (
      m.isLearner &&
      !confirm(
        `Member ${id} is a learner, and etcd's MemberUpdate does not keep that: after it, etcd lists the member ` +
          "as a voting member, counted toward quorum. To move a learner, remove it and add it again as a learner.\n\n" +
          "Change its peer URLs anyway?",
      )
    )
      return;
    const urls = prompt(`Peer URLs of member ${id}, comma separated`, m.peerURLs.join(","));
    if (urls === null) return;
    cluster.memberUpdate({ ID: m.ID, peerURLs: urls.split(",").map((u) => u.trim()) }).then(reload, showError);
  });
  actions.push(update);
  return el(
    "tr",
    { "data-member": id },
    el("td", {}, id),
    el("td", {}, m.name || "(not started)"),
    el("td", {}, m.peerURLs.join(" ")),
    el("td", {}, m.clientURLs.join(" ")),
    el("td", {}, m.isLearner ? "learner" : "voter"),
    el("td", {}, ...actions),
  );
}

/**
 * etcd says its compacted revision only when a watch asks for an older one:
 * a watch from revision 1 is cancelled with compact_revision if anything
 * was compacted. 0 when nothing was.
 */
async function compactedRevision(): Promise<bigint> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), COMPACTION_PROBE_MS);
  try {
    const stream = watchService.watch(
      { watches: [{ key: new Uint8Array([0]), startRevision: 1n }] },
      { signal: abort.signal },
    );
    for await (const r of stream) if (r.canceled) return r.compactRevision;
    return 0n;
  } catch {
    return 0n; // not cancelled in time: nothing compacted
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

/** Maintenance/Snapshot streamed into a file download (etcd ends it with a SHA-256 of the rest). */
async function snapshot(): Promise<void> {
  const state = $("#snapshot-state");
  const parts: BlobPart[] = [];
  let size = 0;
  for await (const r of maintenance.snapshot({})) {
    parts.push(new Uint8Array(r.blob)); // a copy on its own ArrayBuffer, as Blob wants
    size += r.blob.length;
    state.textContent = `${(size / 1024 / 1024).toFixed(1)} MiB…`;
  }
  const blob = new Blob(parts, { type: "application/octet-stream" });
  const a = el("a", { href: URL.createObjectURL(blob), download: "etcd-snapshot.db" }) as HTMLAnchorElement;
  a.click();
  URL.revokeObjectURL(a.href);
  state.textContent = `downloaded ${size} bytes`;
}
