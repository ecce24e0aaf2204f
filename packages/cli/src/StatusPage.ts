/**
 * The admin port's faces of the status model (core Status.ts): `/status` as JSON (today's fields
 * kept, the model's added) and the status page at `GET /` — one self-contained HTML file (no build
 * step, no external assets, readable on a phone) that follows `GET /events` (SSE, one model per
 * second) and draws the agent, a total, each peer with bars both ways, and recent events.
 */
import type { PeerId } from "@can-sync/core"
import type { SessionInfo } from "@can-sync/core/PeerManager"
import type { AgentStatus } from "@can-sync/core/Status"
import { emptyStats } from "@can-sync/core/Status"
import type { PeerPath } from "@can-sync/transport/Transport"

/**
 * `/status`: every configured peer with today's fields (the engine's session state, counters, ICE
 * path and lanes: a contract, kept as they were) and the model's (`phase` is the model's state,
 * `link` its path while connected), plus the agent's version, signaling, store, totals and events.
 */
export const statusJson = (model: AgentStatus, sessions: ReadonlyArray<SessionInfo>, paths: ReadonlyMap<PeerId, PeerPath>) => {
  const byPeer = new Map(sessions.map((s) => [s.peer, s]))
  return {
    peerId: model.peerId,
    version: model.version,
    at: model.at,
    signaling: model.signaling,
    store: model.store,
    totals: model.totals,
    recent: model.recent,
    peers: model.peers.map((p) => {
      const s = byPeer.get(p.peer)
      const path = paths.get(p.peer)
      return {
        peer: p.peer,
        state: s?.state ?? "connecting",
        role: s?.role,
        restarts: p.restarts,
        lastError: s?.lastError,
        lastErrorAt: s?.lastErrorAt,
        nextRetryAt: s?.nextRetryAt,
        ...(s?.stats ?? emptyStats),
        path,
        // parallel connections carrying the link (undefined while not connected)
        lanes: path?.lanes,
        phase: p.state,
        since: p.since,
        connection: p.connection,
        refused: p.refused,
        link: p.path,
        received: p.received,
        sent: p.sent
      }
    })
  }
}

/** The status page. Text from peers (errors) is set through textContent only: nothing is parsed as HTML. */
export const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>can-sync status</title>
<style>
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --dim: #5d6670; --line: #d9dde2;
  --ok: #1a7f37; --busy: #0969da; --warn: #9a6700; --bad: #cf222e; --bar: #e4e7eb; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --dim: #8b949e; --line: #30363d;
  --ok: #3fb950; --busy: #58a6ff; --warn: #d29922; --bad: #f85149; --bar: #30363d; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
header { padding: 12px 16px; border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { font-size: 18px; margin: 0 0 4px; }
main { max-width: 980px; margin: 0 auto; padding: 12px; display: grid; gap: 12px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
h2 { font-size: 15px; margin: 0 0 8px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.dim { color: var(--dim); font-size: 13px; }
.row { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: baseline; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; color: #fff; background: var(--dim); }
.s-live { background: var(--ok); } .s-transferring, .s-reconciling { background: var(--busy); }
.s-connecting, .s-backoff, .s-waiting-for-signaling { background: var(--warn); } .s-refused, .s-failing { background: var(--bad); }
.s-registered { background: var(--ok); }
.dir { display: grid; grid-template-columns: 1.2em 1fr; gap: 2px 8px; align-items: center; margin-top: 6px; }
.bar { height: 10px; background: var(--bar); border-radius: 5px; overflow: hidden; }
.bar > div { height: 100%; background: var(--busy); transition: width .5s; }
.bar.done > div { background: var(--ok); }
.figures { grid-column: 2; font-size: 13px; color: var(--dim); }
.error { color: var(--bad); font-size: 13px; margin-top: 6px; word-break: break-word; }
.error.old { color: var(--dim); }
ol { list-style: none; margin: 0; padding: 0; font-size: 13px; }
ol li { padding: 3px 0; border-top: 1px solid var(--line); word-break: break-word; }
ol li.e-error { color: var(--bad); }
#conn.off { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>can-sync <span id="version" class="dim"></span></h1>
  <div class="row dim"><span>peer <span id="self" class="mono"></span></span><span>signaling <span id="signaling" class="badge"></span></span>
  <span id="store"></span><span id="conn">connecting…</span></div>
</header>
<main>
  <section id="total"><h2>Total</h2><div class="row dim" id="total-peers"></div></section>
  <div id="peers"></div>
  <section><h2>Recent</h2><ol id="recent"></ol></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
const size = (b) => { if (b < 1000) return Math.round(b) + " B"; const u = ["kB", "MB", "GB", "TB"]; let v = b / 1000, i = 0;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; } return v.toFixed(v < 10 ? 2 : 1) + " " + u[i]; };
const dur = (s) => { s = Math.max(0, Math.round(s)); const t = (n) => String(n).padStart(2, "0");
  return s >= 3600 ? Math.floor(s / 3600) + ":" + t(Math.floor(s % 3600 / 60)) + ":" + t(s % 60) : Math.floor(s / 60) + ":" + t(s % 60); };
const time = (ms) => new Date(ms).toLocaleTimeString();
function direction(arrow, d, name) {
  const box = el("div", "dir"); box.dataset.direction = name; box.dataset.percent = String(d.percent);
  box.dataset.assetsToGo = String(d.assetsToGo); box.dataset.assetsDone = String(d.assetsDone);
  box.append(el("span", "", arrow));
  const bar = el("div", "bar" + (d.assetsToGo === 0 ? " done" : "")); const fill = el("div"); fill.style.width = d.percent + "%"; bar.append(fill); box.append(bar);
  const togo = d.assetsToGo === 0 ? "up to date" : d.assetsToGo + " assets" + (d.bytesToGo === undefined ? "" : " (" + (d.bytesToGoEstimated ? "~" : "") + size(d.bytesToGo) + ")") + " to go";
  const eta = d.etaSeconds === undefined ? "" : " · ETA " + dur(d.etaSeconds);
  box.append(el("div", "figures", Math.floor(d.percent) + "% · " + size(d.rateBytesPerSecond) + "/s" + eta + " · " + togo + " · " + d.assetsDone + " assets, " + size(d.bytesDone) + " " + name));
  return box;
}
const stateWords = { "waiting-for-signaling": "waiting for signaling" };
function peer(p, now) {
  const s = el("section", "peer"); s.dataset.peer = p.peer; s.dataset.state = p.state;
  const head = el("div", "row");
  head.append(el("span", "mono", p.peer), el("span", "badge s-" + p.state, stateWords[p.state] || p.state));
  const facts = [];
  if (p.path) facts.push(p.path.kind + (p.path.rttMillis === undefined ? "" : " · " + Math.round(p.path.rttMillis) + " ms") + (p.path.lanes ? " · " + p.path.lanes + " lane(s)" : ""));
  facts.push(p.connection === "never-connected" ? "never connected" : p.connection === "dropped" ? "disconnected" : "connected");
  if (p.nextRetryAt !== undefined) facts.push("next try in " + Math.max(0, Math.ceil((p.nextRetryAt - now) / 1000)) + " s");
  facts.push(p.sessions + " session(s)");
  head.append(el("span", "dim", facts.join(" · ")));
  s.append(head);
  if (p.refused) s.append(el("div", "error", "refused by " + p.refused.by + ": " + p.refused.reason));
  s.append(direction("↓", p.received, "received"), direction("↑", p.sent, "sent"));
  const connected = p.state === "live" || p.state === "transferring" || p.state === "reconciling";
  if (p.lastError) s.append(el("div", connected ? "error old" : "error", (connected ? "earlier error " : "last error ") + time(p.lastError.at) + ": " + p.lastError.message));
  return s;
}
function draw(st) {
  $("version").textContent = st.version;
  $("self").textContent = st.peerId;
  const sig = $("signaling"); sig.textContent = st.signaling.state; sig.className = "badge s-" + st.signaling.state;
  $("store").textContent = st.store ? st.store.assets + " assets · " + size(st.store.bytes) : "";
  const total = $("total"); total.querySelectorAll(".dir").forEach((n) => n.remove());
  $("total-peers").textContent = st.peers.length + " peer(s) · " + st.peers.filter((p) => p.state === "live" || p.state === "transferring").length + " connected";
  total.append(direction("↓", st.totals.received, "received"), direction("↑", st.totals.sent, "sent"));
  $("peers").replaceChildren(...st.peers.map((p) => peer(p, st.at)));
  $("recent").replaceChildren(...st.recent.slice().reverse().map((e) => {
    const li = el("li", "e-" + e.kind, time(e.at) + "  " + (e.peer ? e.peer.slice(0, 12) + "  " : "") + e.text); return li; }));
  document.body.dataset.updated = String(st.at);
}
function follow() {
  const source = new EventSource("events");
  source.addEventListener("status", (m) => { $("conn").textContent = "live"; $("conn").className = ""; draw(JSON.parse(m.data)); });
  source.onerror = () => { $("conn").textContent = "disconnected from the agent, retrying…"; $("conn").className = "off"; };
}
follow();
</script>
</body>
</html>
`
