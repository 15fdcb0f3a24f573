// Leases, cluster and proxy panels.
import { AlarmType } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { cluster, lease, leaseService, maintenance, proxyService, text } from "./client.js";
import { parseMetrics } from "./prometheus.js";
import { $, el, showError } from "./ui.js";

interface LeaseRow {
  id: bigint;
  deadline: number;
  granted: bigint;
  keys: string[];
}

export function setupLeases(): void {
  let rows: LeaseRow[] = [];
  const body = $("#lease-table tbody");
  const draw = () => {
    body.replaceChildren(
      ...rows.map((r) => {
        const left = Math.max(0, Math.round((r.deadline - Date.now()) / 1000));
        const keepAlive = el("button", {}, "Keep alive");
        keepAlive.addEventListener("click", () => void keep(r));
        const revoke = el("button", {}, "Revoke");
        revoke.addEventListener("click", () => void drop(r));
        return el(
          "tr",
          { "data-lease": r.id.toString(16) },
          el("td", {}, r.id.toString(16)),
          el("td", { class: "ttl" }, left > 0 ? `${left} s` : "expired"),
          el("td", {}, `${r.granted} s`),
          el("td", {}, r.keys.join(", ")),
          el("td", {}, keepAlive, revoke),
        );
      }),
    );
  };
  const refresh = async () => {
    try {
      const list = await lease.leaseLeases({});
      rows = await Promise.all(
        list.leases.map(async ({ ID }) => {
          const t = await lease.leaseTimeToLive({ ID, keys: true });
          return { id: ID, deadline: Date.now() + Number(t.TTL) * 1000, granted: t.grantedTTL, keys: t.keys.map(text) };
        }),
      );
      draw();
    } catch (err) {
      showError(err);
    }
  };
  const keep = async (r: LeaseRow) => {
    try {
      const answer = await leaseService.keepAliveOnce({ ID: r.id });
      r.deadline = Date.now() + Number(answer.TTL) * 1000;
      draw();
    } catch (err) {
      showError(err);
    }
  };
  const drop = async (r: LeaseRow) => {
    try {
      await lease.leaseRevoke({ ID: r.id });
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
  $<HTMLFormElement>("#grant").addEventListener("submit", (e) => {
    e.preventDefault();
    const ttl = BigInt(new FormData(e.target as HTMLFormElement).get("ttl") as string);
    void lease.leaseGrant({ TTL: ttl }).then(refresh, showError);
  });
  $("#leases-refresh").addEventListener("click", () => void refresh());
  setInterval(draw, 1000); // the countdown
  document.addEventListener("tab", (e) => (e as CustomEvent).detail === "leases" && void refresh());
}

export function setupCluster(): void {
  const refresh = async () => {
    try {
      const [members, each, alarms] = await Promise.all([
        cluster.memberList({}),
        proxyService.endpointStatus({}),
        maintenance.alarm({}),
      ]);
      const rows = each.endpoints.map((e) => {
        const s = e.status;
        const isLeader = s?.header && s.leader !== 0n && s.header.memberId === s.leader;
        const defrag = el("button", { type: "button", "aria-label": `Defragment ${e.url}` }, "Defragment");
        defrag.addEventListener("click", () => void defragment(e.url).then(refresh, showError));
        return el(
          "tr",
          { "data-endpoint": e.url },
          el("td", {}, e.url),
          el(
            "td",
            {},
            s ? s.header!.memberId.toString(16) + (isLeader ? " (leader)" : s.isLearner ? " (learner)" : "") : "–",
          ),
          el("td", {}, s ? s.version : "–"),
          el("td", {}, s ? String(s.header!.revision) : "–"),
          el("td", {}, s ? String(s.raftTerm) : "–"),
          el("td", { class: "raft-index" }, s ? String(s.raftIndex) : "–"),
          el(
            "td",
            { class: "raft-applied" },
            s ? (s.raftAppliedIndex ? String(s.raftAppliedIndex) : "– (etcd 3.4)") : "–",
          ),
          el("td", { class: "db" }, s ? databaseCell(s.dbSize, s.dbSizeInUse, e.quotaBytes) : "–"),
          el("td", { class: "state" }, e.error || "ok"),
          el("td", {}, s ? defrag : ""),
        );
      });
      const head = el(
        "tr",
        {},
        ...[
          "endpoint",
          "member",
          "etcd",
          "revision",
          "raft term",
          "raft index",
          "applied index",
          "database (size, in use, quota)",
          "state",
          "",
        ].map((h) => el("th", {}, h)),
      );
      $("#cluster-info").replaceChildren(
        el("table", { id: "endpoint-table" }, el("thead", {}, head), el("tbody", {}, ...rows)),
        el(
          "dl",
          {},
          el("dt", {}, "alarms"),
          el(
            "dd",
            {},
            alarms.alarms.length
              ? alarms.alarms.map((a) => `${a.memberID.toString(16)}: ${AlarmType[a.alarm] ?? a.alarm}`).join(", ")
              : "none",
          ),
          el("dt", {}, "members (as MemberList answers through the proxy)"),
          el("dd", {}, members.members.map((m) => `${m.name} ${m.clientURLs.join(" ")}`).join("; ")),
        ),
      );
    } catch (err) {
      showError(err);
    }
  };
  $("#cluster-refresh").addEventListener("click", () => void refresh());
  document.addEventListener("tab", (e) => (e as CustomEvent).detail === "cluster" && void refresh());
}

/** Defragments one member, after saying what it costs. */
async function defragment(url: string): Promise<void> {
  const ok = confirm(
    `Defragment the member at ${url}?\n\nIt rewrites its database to give free pages back to the disk. ` +
      "While it runs, that member answers no reads or writes (clients on it wait), so do one member at a time.",
  );
  if (!ok) return;
  await proxyService.defragmentEndpoint({ url });
}

const MiB = 1024 * 1024;

/** Size on disk, the part in use, and a meter of the size against the member's quota. */
function databaseCell(size: bigint, inUse: bigint, quota: bigint): HTMLElement {
  const mib = (n: bigint) => `${(Number(n) / MiB).toFixed(2)} MiB`;
  const cell = el("span", {}, `${mib(size)}, ${mib(inUse)} in use`);
  if (quota > 0n) {
    const used = Number(size) / Number(quota);
    cell.append(
      ` of ${mib(quota)} `,
      el("meter", {
        min: "0",
        max: "1",
        low: "0.7",
        high: "0.9",
        optimum: "0",
        value: String(used),
        title: `${(used * 100).toFixed(1)}% of the quota`,
      }),
      ` ${(used * 100).toFixed(1)}%`,
    );
  } else cell.append(" (quota unknown: the member's /metrics did not answer)");
  return cell;
}

export function setupProxy(): void {
  let charts: Promise<import("./charts.js").ProxyCharts> | undefined;
  const chartsReady = () =>
    (charts ??= import("./charts.js").then(({ ProxyCharts }) => {
      const c = new ProxyCharts($("#charts"));
      const range = $<HTMLSelectElement>("#chart-range");
      range.addEventListener("change", () => c.setRange(Number(range.value)));
      c.setRange(Number(range.value));
      document.addEventListener("theme", () => c.redraw());
      return c;
    }));
  const poll = async () => {
    if ($("#proxy").hidden) return;
    try {
      const [s, page] = await Promise.all([proxyService.status({}), fetch("/proxy/metrics").then((r) => r.text())]);
      (await chartsReady()).add({ at: Date.now() / 1000, samples: parseMetrics(page) });
      const w = s.watch!;
      const c = s.cache!;
      $("#proxy-info").replaceChildren(
        el(
          "dl",
          {},
          el("dt", {}, "version"),
          el("dd", {}, s.version + (s.namespace ? `, namespace ${s.namespace}` : "")),
          el("dt", {}, "etcd endpoints"),
          el(
            "dd",
            {},
            s.endpoints.map((e) => `${e.url} ${e.healthy ? "up" : "down"}${e.current ? " (in use)" : ""}`).join(", "),
          ),
          el("dt", {}, "watch coalescing"),
          el(
            "dd",
            { id: "coalescing" },
            `${w.clientWatchers} client watchers on ${w.upstreamWatchers} upstream watchers (${w.clientStreams} streams)`,
          ),
          el("dt", {}, "cache"),
          el(
            "dd",
            {},
            c.enabled ? `${c.entries} entries, ${c.bytes} bytes, ${c.hits} hits / ${c.misses} misses` : "off",
          ),
        ),
      );
    } catch (err) {
      showError(err);
    }
  };
  setInterval(() => void poll(), 2000);
  document.addEventListener("tab", (e) => (e as CustomEvent).detail === "proxy" && void poll());
}
