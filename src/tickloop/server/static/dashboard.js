// tickloop dashboard: one page fed by the server's event stream (/api/events/stream), its
// status endpoint (/api/status) and, when the platform runs bots, /api/bots (the bots table,
// whose pause/resume buttons call the API with the control token; the equity curve comes from
// the stream's equity events), and, when the platform has a store, its stored backtests
// (/api/backtests: a table of runs; a click draws that run's equity over its drawdown from
// /api/backtests/{id}, which bounds the points it sends). Everything it keeps is bounded (candles per symbol, log lines,
// one book per symbol), and the DOM is touched at most once per animation frame, so an hour of a
// fast market costs the same memory as a minute. Prices are shown with the venue's digits (the
// stream carries them as strings); the charts get numbers.
"use strict";

const CANDLE_SECONDS = 5;      // candles are built here from trades
const MAX_CANDLES = 600;       // per symbol; older ones leave the chart
const MAX_LOG = 200;           // lines in the event log
const MAX_FILLS = 50;          // rows of the fills table
const DEPTH_LEVELS = 10;       // rows of the book table
const STATUS_EVERY_MS = 2000;  // /api/status polling for the health strip
const BOTS_EVERY_MS = 2000;    // /api/bots polling for the bots table
const MAX_EQUITY = 2000;       // equity points per bot on the curve
const BACKTESTS_EVERY_MS = 10000;  // /api/backtests polling: new stored runs
const BOT_COLOURS = ["#4fc3f7", "#ffb74d", "#ba68c8", "#81c784", "#f06292", "#e0e0e0"];
const MARKET_TYPES = new Set(["trade", "book", "ticker", "candle", "quote", "book_delta"]);

const $ = (id) => document.getElementById(id);
const markets = new Map();     // symbol -> {card, chart, series, candles, last, prev, trades}
const books = new Map();       // symbol -> latest BookSnapshot payload
const logLines = [];           // newest last, at most MAX_LOG
const fills = [];              // newest last, at most MAX_FILLS
let fillCount = 0;
let dirtyLog = false, dirtyBook = false, dirtyFills = false, frameAsked = false;
let received = 0, rateMark = {t: performance.now(), n: 0};
let lastEventId = null, source = null, token = sessionStorage.getItem("tickloop-token") || "";
// Display latency: from the bus event's publish time (its wall-clock ts) to the frame that drew
// the price it carried; the last DISPLAY_SAMPLES samples, in ms (same host: same clock).
const DISPLAY_SAMPLES = 2000;
const display = [];
const equity = new Map();      // bot -> {series, points, last, colour}
let equityChart = null, bots = [], botsAvailable = true, dirtyBots = false, dirtyEquity = false;
let unlocked = false;
const backtest = {runs: [], shown: null, points: 0, maxDrawdown: 0, chart: null,
                  equity: null, drawdown: null, available: true};
window.tickloop = {received: () => received, markets, books, lastEventId: () => lastEventId,
                   display: () => display.slice(), equity, bots: () => bots,
                   backtest: () => ({runs: backtest.runs.length, shown: backtest.shown,
                                     points: backtest.points, maxDrawdown: backtest.maxDrawdown})};

// ------------------------------------------------------------------------------- rendering
function askFrame() {
  if (!frameAsked) { frameAsked = true; requestAnimationFrame(render); }
}

function render() {
  frameAsked = false;
  const now = performance.timeOrigin + performance.now();
  for (const m of markets.values()) {
    if (!m.dirty) continue;
    m.dirty = false;
    display.push(now - m.publishedMs);
    if (display.length > DISPLAY_SAMPLES) display.splice(0, display.length - DISPLAY_SAMPLES);
    const price = m.card.querySelector(".price");
    price.textContent = m.lastText;
    price.className = "price " + (m.last >= m.prev ? "up" : "down");
    m.card.querySelector(".meta").textContent = `${m.trades} trades`;
  }
  if (dirtyBook) { dirtyBook = false; renderBook(); }
  if (dirtyLog) { dirtyLog = false; renderLog(); }
  if (dirtyFills) { dirtyFills = false; renderFills(); }
  if (dirtyBots) { dirtyBots = false; renderBots(); }
  if (dirtyEquity) { dirtyEquity = false; renderEquityLegend(); }
}

// ---------------------------------------------------------------------------------- bots
// A poll never overlaps the previous one: on a slow server, overlapping polls would fill the
// browser's few connections to the host and hold up the requests a click makes.
let botsPolling = false;
async function pollBots() {
  if (!botsAvailable || botsPolling) return;
  botsPolling = true;
  try {
    const r = await fetch("/api/bots", {cache: "no-store"});
    if (r.status === 404) { botsAvailable = false; return; }  // no engine in this platform
    if (r.ok) {
      bots = await r.json();
      $("bots-panel").hidden = false;
      dirtyBots = true;
      askFrame();
    }
  } catch (e) { /* the stream's state already says the server is away */ }
  finally { botsPolling = false; }
}

// ------------------------------------------------------------------------------ backtests
let backtestsPolling = false;
async function loadBacktests() {
  if (!backtest.available || backtestsPolling) return;
  backtestsPolling = true;
  try {
    const r = await fetch("/api/backtests", {cache: "no-store"});
    if (r.status === 404) { backtest.available = false; return; }  // no store on this server
    if (!r.ok) return;
    const runs = await r.json();
    if (runs.length === backtest.runs.length) return;
    backtest.runs = runs;
    renderBacktests();
    if (backtest.shown === null && runs.length) showBacktest(runs[runs.length - 1].id);
  } catch (e) { /* the stream's state already says the server is away */ }
  finally { backtestsPolling = false; }
}

function renderBacktests() {
  $("backtests-panel").hidden = backtest.runs.length === 0;
  const pct = (v) => (v === null || v === undefined) ? "–" : `${(v * 100).toFixed(2)}%`;
  const num = (v) => (v === null || v === undefined) ? "–" : Number(v).toFixed(3);
  const rows = backtest.runs.map((run) => {
    const m = run.metrics;
    const tr = document.createElement("tr");
    tr.dataset.run = run.id;
    if (run.id === backtest.shown) tr.className = "selected";
    const params = Object.entries(run.params).map(([k, v]) => `${k}=${v}`).join(" ");
    for (const text of [run.id, run.bot, run["class"], params, m.bars, money(m.pnl),
                        pct(m.total_return), num(m.sharpe), pct(m.max_drawdown), m.trades]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.append(td);
    }
    tr.addEventListener("click", () => showBacktest(run.id));
    return tr;
  });
  $("backtests").replaceChildren(...rows);
}

async function showBacktest(id) {
  const r = await fetch(`/api/backtests/${id}?points=2000&rows=0`, {cache: "no-store"});
  if (!r.ok) return;
  const data = await r.json();
  const plot = $("backtest-plot");
  plot.hidden = false;
  if (!backtest.chart) {
    backtest.chart = LightweightCharts.createChart(plot, {
      autoSize: true,
      layout: {background: {color: "#171d24"}, textColor: "#7d8a99", attributionLogo: true},
      grid: {vertLines: {color: "#1f2833"}, horzLines: {color: "#1f2833"}},
      timeScale: {timeVisible: true, secondsVisible: true},
      rightPriceScale: {borderColor: "#263040", scaleMargins: {top: 0.05, bottom: 0.35}},
    });
    backtest.equity = backtest.chart.addSeries(LightweightCharts.LineSeries,
                                               {color: "#4fc3f7", lineWidth: 2, title: "equity"});
    backtest.drawdown = backtest.chart.addSeries(LightweightCharts.AreaSeries, {
      priceScaleId: "drawdown", lineColor: "#ef5350", topColor: "rgba(239,83,80,0.05)",
      bottomColor: "rgba(239,83,80,0.4)", lineWidth: 1, title: "drawdown %"});
    backtest.chart.priceScale("drawdown").applyOptions({scaleMargins: {top: 0.7, bottom: 0}});
  }
  // one point a second at most (the chart's time unit); the last of a second wins
  const eq = [], dd = [];
  for (const p of data.equity) {
    const time = Math.floor(p.ts / 1e9);
    const value = Number(p.equity), fall = -100 * p.drawdown;
    if (eq.length && eq[eq.length - 1].time === time) {
      eq[eq.length - 1].value = value;
      dd[dd.length - 1].value = Math.min(dd[dd.length - 1].value, fall);
    } else {
      eq.push({time, value}); dd.push({time, value: fall});
    }
  }
  backtest.equity.setData(eq);
  backtest.drawdown.setData(dd);
  backtest.chart.timeScale().fitContent();
  backtest.shown = id;
  backtest.points = eq.length;
  backtest.maxDrawdown = data.equity.reduce((a, p) => Math.max(a, p.drawdown), 0);
  const run = data.run;
  $("backtest-legend").textContent = `run ${run.id}: ${run.bot} (${run["class"]}), ` +
    `${data.points} points, max drawdown ${(backtest.maxDrawdown * 100).toFixed(2)}%`;
  renderBacktests();
}

function money(text) {
  const n = Number(text);
  return Number.isFinite(n) ? n.toFixed(2) : String(text);
}

function renderBots() {
  const rows = [];
  for (const b of bots) {
    const tr = document.createElement("tr");
    tr.dataset.bot = b.id;
    const held = Object.entries(b.positions || {}).filter(([, v]) => Number(v) !== 0)
      .map(([s, v]) => `${s} ${v}`).join(", ") || "flat";
    const pnl = Number(b.pnl);
    const cells = [
      [b.id, ""], [b["class"], "class"], [b.status + (b.killed ? " (killed)" : ""), "status"],
      [money(b.pnl), pnl > 0 ? "pnl up" : pnl < 0 ? "pnl down" : "pnl"], [held, "position"],
      [String(b.open_orders), "orders"], [String(b.errors), "errors"],
      [`${(b.handler_seconds * 1000).toFixed(1)} ms`, "handler"], [b.last_error || "", "error"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      if (cls === "status") td.dataset.status = b.status;
      if (cls === "error") td.title = text;
      tr.appendChild(td);
    }
    const action = b.status === "running" ? "pause" : "resume";
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action;
    button.dataset.action = action;
    button.disabled = !unlocked || b.status === "stopped";
    button.title = unlocked ? `${action} ${b.id}` : "unlock with the control token first";
    button.addEventListener("click", () => control(b.id, action));
    td.appendChild(button);
    tr.appendChild(td);
    rows.push(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    tr.innerHTML = '<td colspan="10">no bot</td>';
    rows.push(tr);
  }
  $("bots").replaceChildren(...rows);
  $("bots-note").textContent = unlocked ? "" : "unlock with the control token to pause or resume";
}

async function control(id, action) {
  let r;
  try {
    r = await fetch(`/api/bots/${encodeURIComponent(id)}/${action}`,
                    {method: "POST", headers: {Authorization: `Bearer ${token}`},
                     signal: AbortSignal.timeout(AUTH_TIMEOUT_MS)});
  } catch (e) {
    addLog("control", `bots.${id}`, `${action}: not sent (${e.name})`);
    askFrame();
    return;
  }
  if (r.status === 401) { lock(`refused (${r.status})`); return; }
  if (r.ok) {
    const info = await r.json();
    bots = bots.map((b) => (b.id === info.id ? info : b));
    addLog("control", `bots.${info.id}`, `${action}: ${info.status}`);
    dirtyBots = true;
    askFrame();
  }
}

// -------------------------------------------------------------------------------- equity
function onEquity(e) {
  if (!e.bot) return;
  $("equity-panel").hidden = false;
  if (!equityChart) {
    equityChart = LightweightCharts.createChart($("equity-plot"), {
      autoSize: true,
      layout: {background: {color: "#171d24"}, textColor: "#7d8a99", attributionLogo: true},
      grid: {vertLines: {color: "#1f2833"}, horzLines: {color: "#1f2833"}},
      timeScale: {timeVisible: true, secondsVisible: true},
      rightPriceScale: {borderColor: "#263040"},
    });
  }
  let line = equity.get(e.bot);
  if (!line) {
    const colour = BOT_COLOURS[equity.size % BOT_COLOURS.length];
    const series = equityChart.addSeries(LightweightCharts.LineSeries,
                                         {color: colour, lineWidth: 2, title: e.bot});
    line = {series, points: [], last: "", colour};
    equity.set(e.bot, line);
  }
  const time = Math.floor(e.ts / 1e9);
  const value = Number(e.equity);
  const points = line.points;
  const tail = points[points.length - 1];
  if (tail && time < tail.time) return;          // an older snapshot (a replay): skip it
  if (tail && time === tail.time) tail.value = value; else points.push({time, value});
  if (points.length > MAX_EQUITY + 100) {        // bound the chart's copy too
    points.splice(0, points.length - MAX_EQUITY);
    line.series.setData(points.map((p) => ({...p})));
  } else {
    line.series.update({time, value});
  }
  line.last = e.equity;
  dirtyEquity = true;
}

function renderEquityLegend() {
  const spans = [];
  for (const [bot, line] of equity) {
    const span = document.createElement("span");
    span.style.color = line.colour;
    span.dataset.bot = bot;
    span.textContent = `${bot} ${money(line.last)}`;
    spans.push(span);
  }
  $("equity-legend").replaceChildren(...spans);
}

function onFill(fill) {
  fills.push(fill);
  if (fills.length > MAX_FILLS) fills.splice(0, fills.length - MAX_FILLS);
  fillCount += 1;
  dirtyFills = true;
}

function renderFills() {
  const rows = [];
  for (let i = fills.length - 1; i >= 0; i--) {
    const f = fills[i];
    const tr = document.createElement("tr");
    tr.dataset.order = f.order_id;
    const time = new Date(f.ts / 1e6).toISOString().slice(11, 23);
    for (const [text, cls] of [[time, ""], [f.venue, ""], [f.symbol, ""], [f.side, f.side],
        [f.size, ""], [f.price, ""], [`${f.fee} ${f.fee_asset || ""}`.trim(), ""],
        [f.liquidity, ""], [f.order_id, ""]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    rows.push(tr);
  }
  $("fills").replaceChildren(...rows);
  $("fills-count").textContent = `${fillCount} in all`;
}

function market(symbol) {
  let m = markets.get(symbol);
  if (m) return m;
  const card = document.createElement("div");
  card.className = "chart";
  card.dataset.symbol = symbol;
  card.innerHTML = `<div class="title"><span class="symbol"></span><span class="meta"></span>` +
    `<span class="price">–</span></div><div class="plot"></div>`;
  card.querySelector(".symbol").textContent = symbol;
  $("charts").appendChild(card);
  const chart = LightweightCharts.createChart(card.querySelector(".plot"), {
    autoSize: true,
    layout: {background: {color: "#171d24"}, textColor: "#7d8a99", attributionLogo: true},
    grid: {vertLines: {color: "#1f2833"}, horzLines: {color: "#1f2833"}},
    timeScale: {timeVisible: true, secondsVisible: true, barSpacing: 9, rightOffset: 3},
    rightPriceScale: {borderColor: "#263040"},
  });
  const series = chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
  m = {card, chart, series, candles: [], last: 0, prev: 0, lastText: "–", trades: 0, dirty: false,
       publishedMs: 0};
  markets.set(symbol, m);
  const option = document.createElement("option");
  option.value = option.textContent = symbol;
  $("depth-symbol").appendChild(option);
  return m;
}

function onTrade(trade, eventTs) {
  const m = market(trade.symbol);
  const price = Number(trade.price);
  const ns = trade.ts || eventTs;
  let time = Math.floor(ns / 1e9 / CANDLE_SECONDS) * CANDLE_SECONDS;
  const candles = m.candles;
  let bar = candles[candles.length - 1];
  if (bar && time < bar.time) time = bar.time;   // a late trade joins the current candle
  if (!bar || time > bar.time) {
    bar = {time, open: price, high: price, low: price, close: price};
    candles.push(bar);
  } else {
    bar.high = Math.max(bar.high, price);
    bar.low = Math.min(bar.low, price);
    bar.close = price;
  }
  if (candles.length > MAX_CANDLES + 60) {       // bound the chart's own copy too
    candles.splice(0, candles.length - MAX_CANDLES);
    m.series.setData(candles.map((c) => ({...c})));
  } else {
    m.series.update({...bar});
  }
  m.prev = m.last || price;
  m.last = price;
  m.lastText = trade.price;
  m.trades += 1;
  if (!m.dirty) m.publishedMs = eventTs / 1e6;  // the oldest trade this frame will draw
  m.dirty = true;
}

function onBook(book) {
  if (!markets.has(book.symbol)) market(book.symbol);
  books.set(book.symbol, book);
  if (book.symbol === $("depth-symbol").value) dirtyBook = true;
}

function renderBook() {
  const book = books.get($("depth-symbol").value);
  const rows = $("depth-rows");
  if (!book) { rows.replaceChildren(); return; }
  const bids = book.bids.slice(0, DEPTH_LEVELS), asks = book.asks.slice(0, DEPTH_LEVELS);
  let cb = 0, ca = 0;
  const cumBids = bids.map((l) => (cb += Number(l[1]))), cumAsks = asks.map((l) => (ca += Number(l[1])));
  const top = Math.max(cb, ca) || 1;
  const out = [];
  for (let i = 0; i < DEPTH_LEVELS; i++) {
    const tr = document.createElement("tr");
    const b = bids[i], a = asks[i];
    tr.append(
      cell(b ? b[1] : "", "bar-bid", b ? cumBids[i] / top : 0), cell(b ? b[0] : "", "bid"),
      cell(a ? a[0] : "", "ask"), cell(a ? a[1] : "", "bar-ask", a ? cumAsks[i] / top : 0));
    out.push(tr);
  }
  rows.replaceChildren(...out);
  $("depth-seq").textContent = book.sequence != null ? `seq ${book.sequence}` : "";
}

function cell(text, cls, share) {
  const td = document.createElement("td");
  td.textContent = text;
  td.className = cls;
  if (share !== undefined) td.style.setProperty("--w", `${Math.round(share * 100)}%`);
  return td;
}

function summary(ev) {
  const p = ev.payload || {};
  switch (ev.type) {
    case "trade": return `${p.symbol} ${p.side || ""} ${p.size} @ ${p.price}`;
    case "book": return `${p.symbol} bid ${p.bids[0] ? p.bids[0][0] : "–"} ask ${p.asks[0] ? p.asks[0][0] : "–"}`;
    case "fill": return `${p.symbol} ${p.side} ${p.size} @ ${p.price} (${p.order_id})`;
    case "order": {
      const o = p.order || p;
      return `${p.kind || ""} ${o.symbol} ${o.side} ${o.size} ${o.status} (${o.id})`;
    }
    case "status": return [p.model, p.venue, p.symbol, p.reason, p.url].filter(Boolean).join(" ");
    case "bus_dropped": return `${p.subscription} dropped ${p.dropped} (${p.total} in all)`;
    case "handler_failed": return `${p.subscription} ${p.handler}: ${p.error}`;
    case "bot_error": return `${p.bot} ${p.handler}: ${p.error}`;
    case "signal": return `${p.bot} ${p.name} ${p.symbol || ""} ${p.value ?? ""}`;
    case "equity": return `${p.bot} equity ${money(p.equity)} (pnl ${money(Number(p.realized_pnl) + Number(p.unrealized_pnl))})`;
    case "position": return `${p.bot || ""} ${p.symbol} ${p.size}`;
    case "circuit_breaker": return `${p.bot} paused after ${p.errors} errors`;
    case "risk_rejected": return `${p.bot} ${p.check}: ${p.reason}`;
    default: return JSON.stringify(p).slice(0, 160);
  }
}

function addLog(kind, topic, text, ns) {
  if (MARKET_TYPES.has(kind) && !$("log-market").checked) return;
  const t = ns ? new Date(ns / 1e6) : new Date();
  logLines.push({kind, topic, text, time: t.toISOString().slice(11, 23)});
  if (logLines.length > MAX_LOG) logLines.splice(0, logLines.length - MAX_LOG);
  dirtyLog = true;
}

function renderLog() {
  const items = [];
  for (let i = logLines.length - 1; i >= 0; i--) {
    const line = logLines[i];
    const li = document.createElement("li");
    li.dataset.kind = line.kind;
    const t = document.createElement("span"); t.className = "t"; t.textContent = line.time;
    const k = document.createElement("span"); k.className = "k " + line.kind; k.textContent = line.kind;
    li.append(t, k, document.createTextNode(`${line.topic} ${line.text}`));
    items.push(li);
  }
  $("log").replaceChildren(...items);
}

// --------------------------------------------------------------------------------- stream
function onEvent(message) {
  lastEventId = message.lastEventId || lastEventId;
  const ev = JSON.parse(message.data);
  received += 1;
  if (ev.type === "trade") onTrade(ev.payload, ev.ts);
  else if (ev.type === "book") onBook(ev.payload);
  else if (ev.type === "fill") onFill(ev.payload);
  else if (ev.type === "equity") onEquity(ev.payload);
  if (ev.type === "bot_error" || ev.type === "circuit_breaker") pollBots();
  addLog(ev.type, ev.topic, summary(ev), ev.ts);
  askFrame();
}

function setStream(state) {
  const b = $("h-stream");
  b.dataset.state = state;
  b.textContent = state;
}

function connect() {
  // The browser resumes by itself (Last-Event-ID) after a dropped connection; a new
  // EventSource, after the browser gave up, resumes through the query parameter.
  const query = lastEventId ? `last_event_id=${encodeURIComponent(lastEventId)}` : "backlog=1";
  source = new EventSource(`/api/events/stream?${query}`);
  source.onopen = () => setStream("connected");
  source.onmessage = onEvent;
  source.addEventListener("lost", (m) => {
    const lost = JSON.parse(m.data);
    addLog("lost", lost.streams.join(","), `${lost.reason} after ${lost.after || "start"}`);
    askFrame();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setStream("reconnecting");
      source.close();
      setTimeout(connect, 2000);
    } else {
      setStream("reconnecting");
    }
  };
}

// --------------------------------------------------------------------------------- health
let statusPolling = false;
async function pollStatus() {
  if (statusPolling) return;
  statusPolling = true;
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (r.ok) {
      const s = await r.json();
      const sum = (k) => s.feeds.reduce((a, f) => a + f[k], 0);
      $("h-feeds").textContent = s.feeds.map((f) => `${f.venue} ${f.connections_open}/${f.connections}`).join(" ") || "none";
      $("h-reconnects").textContent = sum("reconnects");
      $("h-gaps").textContent = sum("gaps");
      $("h-resyncs").textContent = sum("book_resyncs");
      $("h-lag").textContent = `${(s.loop_lag_max_seconds * 1000).toFixed(1)} ms`;
      $("h-drops").textContent = s.bus.dropped;
    }
  } catch (e) { /* the stream's state already says the server is away */ }
  finally { statusPolling = false; }
  const now = performance.now();
  $("h-rate").textContent = Math.round((received - rateMark.n) * 1000 / (now - rateMark.t));
  if (display.length) {
    const recent = display.slice(-200).sort((a, b) => a - b);
    $("h-display").textContent = `${recent[Math.floor(recent.length / 2)].toFixed(1)} ms`;
  }
  rateMark = {t: now, n: received};
}

// -------------------------------------------------------------------------------- control
// A check never leaves the page silently stuck: each try is bounded in time, a network error
// or a timeout is retried a few times with the state saying so, and the last failure is shown.
const AUTH_TRIES = 4;
const AUTH_TIMEOUT_MS = 8000;
let authCheck = 0;  // a newer check (another click) makes an older one give up quietly
async function checkToken(candidate) {
  const state = $("control-state");
  const mine = ++authCheck;
  state.dataset.state = "checking"; state.textContent = "checking…";
  for (let attempt = 1; attempt <= AUTH_TRIES; attempt++) {
    let r;
    try {
      r = await fetch("/api/auth", {cache: "no-store",
                                    headers: {Authorization: `Bearer ${candidate}`},
                                    signal: AbortSignal.timeout(AUTH_TIMEOUT_MS)});
    } catch (e) {
      if (mine !== authCheck) return;
      if (attempt === AUTH_TRIES) { lock(`unreachable (${e.name})`); return; }
      state.textContent = `unreachable (${e.name}), retrying`;
      await new Promise((done) => setTimeout(done, 500 * attempt));
      continue;
    }
    if (mine !== authCheck) return;
    if (r.ok) {
      token = candidate;
      sessionStorage.setItem("tickloop-token", token);
      state.dataset.state = "unlocked"; state.textContent = "unlocked";
      unlocked = true;
      dirtyBots = true;
      askFrame();
    } else {
      lock(`refused (${r.status})`);
    }
    return;
  }
}

function lock(text) {
  const state = $("control-state");
  sessionStorage.removeItem("tickloop-token");
  unlocked = false;
  state.dataset.state = "refused"; state.textContent = text;
  dirtyBots = true;
  askFrame();
}

$("control").addEventListener("submit", (e) => { e.preventDefault(); checkToken($("token").value.trim()); });
$("depth-symbol").addEventListener("change", () => { dirtyBook = true; askFrame(); });
if (token) checkToken(token);
connect();
pollStatus();
setInterval(pollStatus, STATUS_EVERY_MS);
pollBots();
setInterval(pollBots, BOTS_EVERY_MS);
loadBacktests();
setInterval(loadBacktests, BACKTESTS_EVERY_MS);
