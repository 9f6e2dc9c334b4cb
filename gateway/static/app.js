// TickStock dashboard: live market events over Socket.IO (DESIGN §6).
// Resumes by seq after a reconnect (auth.last_seq), de-duplicates events by id, and clears
// its lists on a session change. Data is written with textContent only (never as HTML).
(() => {
  "use strict";

  const MAX_ROWS = 250; // rows kept per column
  const LISTS = {
    highs: (p) => p.highs,
    lows: (p) => p.lows,
    surge_up: (p) => p.surging && p.surging.up,
    surge_down: (p) => p.surging && p.surging.down,
    trend_up: (p) => p.trending && p.trending.up,
    trend_down: (p) => p.trending && p.trending.down,
  };
  const state = { lastSeq: null, fresh: true, session: null, seen: new Set(), socket: null, counts: {} };
  window.__tickstock = state; // for debugging from the console (and the browser tests)
  const $ = (id) => document.getElementById(id);
  const etTime = new Intl.DateTimeFormat("en-US", {
    timeZone: "America/New_York", hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  // -- REST -----------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", ...options };
    if (init.body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(init.body);
    }
    const response = await fetch(path, init);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // -- rendering ------------------------------------------------------------------------------

  function fmtPrice(p) {
    return typeof p === "number" ? p.toFixed(p < 1 ? 4 : 2) : "—";
  }

  function fmtPct(v) {
    if (typeof v !== "number") return "";
    return (v > 0 ? "+" : "") + v.toFixed(2) + "%";
  }

  function detail(listName, e) {
    if (listName === "highs" || listName === "lows") {
      const parts = [e.label || (e.count ? `#${e.count}` : "")];
      if (e.reversal) parts.push(e.reversal);
      return parts.filter(Boolean).join(" · ");
    }
    if (listName.startsWith("surge")) {
      const mag = typeof e.magnitude === "number" ? fmtPct(e.magnitude) : "";
      return [mag, e.strength, e.trigger].filter(Boolean).join(" · ");
    }
    return [e.strength, e.vwap_position ? `VWAP ${e.vwap_position}` : ""].filter(Boolean).join(" · ");
  }

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function addRow(listName, e) {
    if (!e || !e.id || state.seen.has(e.id)) return;
    state.seen.add(e.id);
    const li = document.createElement("li");
    li.className = "row new";
    li.dataset.id = e.id;
    li.dataset.ticker = e.ticker;
    const chg = span("chg " + ((e.pct_change || 0) >= 0 ? "up" : "down"), fmtPct(e.pct_change));
    li.append(
      span("tk", e.ticker),
      span("px", fmtPrice(e.price)),
      span("meta", `${etTime.format(new Date(e.time))} ${detail(listName, e)}`),
      chg,
    );
    const list = $(`list-${listName}`);
    list.prepend(li);
    while (list.children.length > MAX_ROWS) {
      state.seen.delete(list.lastElementChild.dataset.id);
      list.lastElementChild.remove();
    }
    state.counts[listName] = (state.counts[listName] || 0) + 1;
    setTimeout(() => li.classList.remove("new"), 1300);
  }

  function clearLists() {
    for (const name of Object.keys(LISTS)) {
      $(`list-${name}`).replaceChildren();
      state.counts[name] = 0;
      $(`count-${name}`).textContent = "0";
    }
    state.seen.clear();
  }

  function setSession(session, date) {
    const badge = $("session");
    badge.textContent = session || "—";
    badge.className = "badge " + (session || "");
    if (date !== undefined) $("session-date").textContent = date || "—";
  }

  function setConn(text, cls) {
    const el = $("conn");
    el.textContent = text;
    el.className = "conn " + (cls || "");
  }

  function showActivity(activity, gauge) {
    if (activity && Object.keys(activity).length) {
      const level = activity.activity_level || "—";
      const tpm = activity.ticks_per_minute;
      $("activity").textContent = typeof tpm === "number" ? `${level} (${tpm}/min)` : level;
      $("activity").title = activity.market_phase || "";
    }
    if (gauge && typeof gauge.net_score === "number") {
      const score = Math.max(-10, Math.min(10, gauge.net_score));
      const fill = $("gauge-fill");
      fill.style.width = `${(Math.abs(score) / 10) * 50}%`;
      fill.style.left = score >= 0 ? "50%" : `${50 - (Math.abs(score) / 10) * 50}%`;
      fill.classList.toggle("neg", score < 0);
      $("gauge-value").textContent = (score > 0 ? "+" : "") + score.toFixed(1);
    }
  }

  // -- socket events --------------------------------------------------------------------------

  function onStockData(p) {
    if (!p || typeof p.seq !== "number") return;
    if (!state.fresh && state.lastSeq !== null && p.seq <= state.lastSeq) return; // duplicate
    state.fresh = false;
    state.lastSeq = p.seq;
    if (p.session && p.session !== state.session) {
      if (state.session !== null) clearLists();
      state.session = p.session;
      setSession(p.session);
    }
    for (const [name, pick] of Object.entries(LISTS)) {
      const events = pick(p) || [];
      for (const e of events) addRow(name, e); // oldest first, so the newest ends on top
      $(`count-${name}`).textContent = String(state.counts[name] || 0);
    }
    showActivity(p.activity, p.gauge);
  }

  function onStatus(s) {
    if (!s) return;
    if (s.session) {
      if (state.session !== null && s.session !== state.session) clearLists();
      state.session = s.session;
    }
    setSession(s.session, s.session_date);
    const feed = s.feed || "unknown";
    $("feed-text").textContent = feed;
    const dot = document.querySelector("#feed .dot");
    dot.className = "dot " + (/connected|running|ok|live|replay/.test(feed) ? "ok" : /down|error|stale/.test(feed) ? "bad" : "warn");
    $("lag").textContent = typeof s.lag_ms === "number" ? `${Math.round(s.lag_ms)} ms` : "—";
    $("ticks").textContent = typeof s.ticks_per_s === "number" ? s.ticks_per_s.toFixed(0) : "—";
    $("eps").textContent = typeof s.events_per_s === "number" ? s.events_per_s.toFixed(1) : "—";
    $("clients").textContent = String(s.connected ?? "—");
    const t = s.watermark || s.server_time;
    if (t) $("clock").textContent = etTime.format(new Date(t));
  }

  function onReset(r) {
    clearLists();
    state.session = r.session;
    setSession(r.session, r.session_date);
    const banner = $("banner");
    banner.textContent = `New market session: ${r.session} (${r.session_date}); previous: ${r.previous || "—"}`;
    banner.hidden = false;
    setTimeout(() => { banner.hidden = true; }, 15000);
  }

  function connect() {
    if (typeof io === "undefined") {
      setConn("socket.io client missing", "down");
      return;
    }
    if (state.socket) state.socket.disconnect();
    const socket = io({
      path: "/socket.io",
      auth: (cb) => cb(state.lastSeq === null ? {} : { last_seq: state.lastSeq }),
    });
    state.socket = socket;
    socket.on("connect", () => { state.fresh = true; setConn("live", "live"); });
    socket.on("disconnect", () => setConn("reconnecting…", "down"));
    socket.on("connect_error", (err) => {
      setConn("offline", "down");
      if (!socket.active) { // refused by the server (authentication): ask for a login
        showLogin();
      }
      console.warn("socket connect error:", err && err.message);
    });
    socket.on("stock_data", onStockData);
    socket.on("status_update", onStatus);
    socket.on("session_reset", onReset);
  }

  function restream() {
    // A changed universe or filter: start a fresh stream, so the snapshot matches the view.
    clearLists();
    state.lastSeq = null;
    connect();
  }

  // -- universes and filters ------------------------------------------------------------------

  async function loadUniverses() {
    try {
      const [{ universes }, current] = await Promise.all([api("/api/universes"), api("/api/universes/current")]);
      const chosen = new Set((current.selections && current.selections.highlow) || []);
      const box = $("universe-list");
      box.replaceChildren();
      for (const [name, size] of Object.entries(universes).sort()) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = name;
        input.checked = chosen.has(name);
        label.append(input, ` ${name} (${size})`);
        box.append(label);
      }
      $("universe-note").textContent = current.ticker_count == null ? "all tickers" : `${current.ticker_count} tickers`;
    } catch (err) {
      $("universe-note").textContent = err.message;
    }
  }

  async function applyUniverses(ev) {
    ev.preventDefault();
    const names = [...$("universe-list").querySelectorAll("input:checked")].map((i) => i.value);
    try {
      const view = await api("/api/universes/select", { method: "POST", body: { tracker: "highlow", universes: names } });
      $("universe-note").textContent = view.ticker_count == null ? "all tickers" : `${view.ticker_count} tickers`;
      restream();
    } catch (err) {
      $("universe-note").textContent = err.message;
    }
  }

  async function loadFilters() {
    try {
      const { filters } = await api("/api/user-filters");
      const form = $("filter-form");
      form.min_count.value = filters.highlow.min_count;
      form.min_volume.value = filters.highlow.min_volume;
      form.magnitude.value = filters.surge.magnitude;
      form.strength.value = filters.trends.strength;
      form.vwap_position.value = filters.trends.vwap_position;
    } catch (err) {
      $("filter-note").textContent = err.message;
    }
  }

  async function applyFilters(ev) {
    ev.preventDefault();
    const form = $("filter-form");
    const body = {
      highlow: { min_count: Number(form.min_count.value) || 0, min_volume: Number(form.min_volume.value) || 0 },
      surge: { magnitude: Number(form.magnitude.value) || 0 },
      trends: { strength: form.strength.value, vwap_position: form.vwap_position.value },
    };
    try {
      await api("/api/user-filters", { method: "POST", body });
      $("filter-note").textContent = "applied";
      restream();
    } catch (err) {
      $("filter-note").textContent = err.message;
    }
  }

  // -- login ----------------------------------------------------------------------------------

  let registering = false;

  function showLogin() {
    $("login").hidden = false;
  }

  async function submitLogin(ev) {
    ev.preventDefault();
    const form = $("login-form");
    const creds = { username: form.username.value, password: form.password.value };
    $("login-error").textContent = "";
    try {
      if (registering) {
        await api("/api/auth/register", { method: "POST", body: { ...creds, email: form.email.value } });
      }
      await api("/api/auth/login", { method: "POST", body: creds });
      form.password.value = "";
      $("login").hidden = true;
      await start();
    } catch (err) {
      $("login-error").textContent = err.message;
    }
  }

  function toggleRegister() {
    registering = !registering;
    $("email-row").hidden = !registering;
    $("login-submit").textContent = registering ? "Create account" : "Sign in";
    $("register-toggle").textContent = registering ? "I have an account" : "Create an account";
  }

  async function logout() {
    await api("/api/auth/logout", { method: "POST", body: {} }).catch(() => {});
    if (state.socket) state.socket.disconnect();
    clearLists();
    state.lastSeq = null;
    showLogin();
  }

  // -- start ----------------------------------------------------------------------------------

  async function start() {
    try {
      const me = await api("/api/auth/me");
      $("user").textContent = me.auth_mode === "local" ? "local mode" : me.username;
      $("logout").hidden = me.auth_mode === "local";
      connect();
      loadUniverses();
      loadFilters();
    } catch (err) {
      if (err.status === 401) showLogin();
      else setConn(`error: ${err.message}`, "down");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", submitLogin);
    $("register-toggle").addEventListener("click", toggleRegister);
    $("logout").addEventListener("click", logout);
    $("universe-form").addEventListener("submit", applyUniverses);
    $("filter-form").addEventListener("submit", applyFilters);
    start();
  });
})();
