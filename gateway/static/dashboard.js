/*
 * matchwire live dashboard (served by the gateway at /test; no build step, no CDN).
 *
 * Data sources (docs/api.md for REST, docs/feeds.md for the WebSockets):
 *   GET /                               symbols and their rules, feed_url of the feed hub
 *   ${feed_url}/ws/market_data/{symbol} snapshot, then l2update with book_seq +1 each
 *   ${feed_url}/ws/trades?symbol=       every trade
 *   GET /trades/{symbol}?limit=1000     trade history, and to fill a trade-id gap
 *   POST /submit_order, /submit_stop_order, /cancel_order, /amend_order,
 *   GET /orders/{symbol}?status=open
 *
 * Why the delta feed rather than ?depth=20: a snapshot plus l2updates gives the whole book
 * (the depth chart shows more than 20 levels), book_seq proves that no update was missed,
 * and the CRC32 checksum proves that the local copy equals the hub's; traffic grows with
 * the number of changes, not with depth x changes. The cost is keeping a book here: two
 * Maps keyed by the price string as sent, sorted at most once per animation frame, and
 * the checksum is verified at that point, against the newest update applied.
 *
 * Rendering: socket handlers only change state and mark what is dirty; one
 * requestAnimationFrame pass redraws the ladder, tape and charts, so a burst of messages
 * costs one repaint per frame, and a hidden tab does no drawing at all.
 */
"use strict";

(() => {
  const STORAGE = {
    theme: "matchwire.theme",
    symbol: "matchwire.symbol",
    account: "matchwire.account",
    apiKey: "matchwire.apiKey",
    defaultAccount: "matchwire.defaultAccount",  // this browser's own web-xxxxxx
  };
  const STOP_TYPES = new Set(["stop_loss", "stop_limit", "take_profit"]);
  const TRADE_LOG_MAX = 5000;      // trades kept for the price chart
  const TAPE_ROWS = 300;           // trades shown in the tape (and exported as CSV)
  const TRADE_HISTORY = 1000;      // GET /trades limit (the API's maximum)
  const DEPTH_CHART_LEVELS = 100;  // levels per side drawn in the depth chart
  const DEPTH_BAND = 0.02;         // the depth chart never reaches further than mid ± 2%
  const DEPTH_BAND_LEVELS = 50;    // ... and narrows to the 50 best levels a side inside it
  // Highlights of changed ladder levels and new trades. A level flashes at most once a
  // second, and at most a few rows flash at once, so a book changing thousands of times a
  // second stays readable (the bars and numbers tell the rest). FLASH_MS and TAPE_FLASH_MS
  // are the animations' lengths in dashboard.css.
  const FLASH_MS = 600;
  const FLASH_LEVEL_COOLDOWN_MS = 1000;
  const FLASH_MAX_PER_SIDE = 3;
  const TAPE_FLASH_MS = 800;
  const TAPE_FLASH_MAX = 3;
  const RESULTS_MAX = 40;
  const OPEN_ORDERS_POLL_MS = 5000;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 8000;
  const STABLE_AFTER_MS = 10000;   // a socket open this long resets its backoff
  const CHECKSUM_STRIKES = 3;      // mismatches in a row, each after a fresh snapshot

  const $ = (id) => document.getElementById(id);

  /**
   * Rate limit for highlights: `start(key)` says whether a change of `key` may flash now
   * (not while `maxActive` others flash, nor twice within `cooldownMs`); `elapsed(key)`
   * is how far into its flash a key is, or null, so a row that is drawn again continues
   * its animation instead of restarting it.
   */
  class Highlighter {
    constructor(durationMs, maxActive, cooldownMs) {
      this.durationMs = durationMs;
      this.maxActive = maxActive;
      this.cooldownMs = cooldownMs;
      this.started = new Map();  // key -> start time (ms)
    }

    prune(now) {
      const keep = Math.max(this.durationMs, this.cooldownMs);
      for (const [key, at] of this.started) if (now - at >= keep) this.started.delete(key);
    }

    active(now) {
      let count = 0;
      for (const at of this.started.values()) if (now - at < this.durationMs) count += 1;
      return count;
    }

    start(key, now) {
      this.prune(now);
      if (this.started.has(key) || this.active(now) >= this.maxActive) return false;
      this.started.set(key, now);
      return true;
    }

    elapsed(key, now) {
      const at = this.started.get(key);
      return at !== undefined && now - at < this.durationMs ? now - at : null;
    }

    /** Milliseconds until the next flash ends, or null when none is running. */
    nextEnd(now) {
      let soonest = null;
      for (const at of this.started.values()) {
        const left = this.durationMs - (now - at);
        if (left > 0 && (soonest === null || left < soonest)) soonest = left;
      }
      return soonest;
    }
  }

  const store = {
    get(key) {
      try { return localStorage.getItem(key); } catch (e) { return null; }
    },
    set(key, value) {
      try {
        if (value === null || value === undefined || value === "") localStorage.removeItem(key);
        else localStorage.setItem(key, value);
      } catch (e) { /* storage disabled or full: the setting lasts for this page only */ }
    },
  };

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  /** Decimal places of a step such as "0.0001" or "1E-7" (Python's str(Decimal)). */
  function decimalsOf(step) {
    const text = String(step);
    const exp = /e-(\d+)$/i.exec(text);
    if (exp) return Number(exp[1]);
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : text.length - dot - 1;
  }

  /** ISO time with microseconds -> epoch ms (Date.parse wants at most milliseconds). */
  function parseTime(iso) {
    if (!iso) return NaN;
    return Date.parse(String(iso).replace(/(\.\d{3})\d+/, "$1"));
  }

  function clockTime(ms, withMillis) {
    if (!Number.isFinite(ms)) return "";
    const d = new Date(ms);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMillis ? `${hms}.${pad(d.getMilliseconds(), 3)}` : hms;
  }

  // ---- CRC32 (IEEE), for the feed's book checksum --------------------------------------

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(text) {
    let crc = 0xffffffff;
    for (let i = 0; i < text.length; i++) {
      crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
    }
    return (crc ^ 0xffffffff) >>> 0;
  }

  /** Kraken's checksum of the top 10 levels: asks best first, then bids best first. */
  function bookChecksum(asks, bids) {
    const strip = (s) => s.replace(".", "").replace(/^0+/, "");
    let text = "";
    for (const level of asks.slice(0, 10)) text += strip(level[0]) + strip(level[1]);
    for (const level of bids.slice(0, 10)) text += strip(level[0]) + strip(level[1]);
    return crc32(text);
  }

  // ---- state ----------------------------------------------------------------------------

  const state = {
    info: null,             // GET / answer
    symbol: null,
    rules: null,            // the symbol's rules plus priceDecimals, qtyDecimals, base, quote
    book: null,             // see newBook()
    trades: [],             // ascending trade_id, at most TRADE_LOG_MAX
    tradeIds: new Set(),
    tradesLoaded: false,    // the REST history arrived for the current trades socket
    tapeShownMaxId: null,   // newest trade_id rendered in the tape
    tapeRebuild: true,
    openOrders: [],
    openOrdersLoads: 0,     // GET /orders answers applied (tests wait on it)
    results: [],
    feeds: { market: null, trades: null },
    dirty: { book: true, ladder: true, trades: true, depth: true, price: true },
    hover: { depth: null, price: null },
    chartMode: "line",  // the price panel: "line" (trades) or "candles" (GET /candles)
    candles: null,
    candleError: null,
    charts: { depth: null, price: null, candles: null },  // what the charts drew last: ranges, label boxes
    auth: null,             // GET / says whether the gateway wants API keys (null: unknown)
    amend: null,            // {orderId} while the inline amend editor is open
    everLive: false,
    resyncs: 0,
    lastProblem: "",
    palette: null,
    generation: 0,          // bumped on symbol switch; answers for an older one are dropped
  };

  function newBook() {
    return {
      bids: new Map(),      // price string as sent -> quantity string
      asks: new Map(),
      seq: null,
      synced: false,
      sortedBids: [],       // [[price, qty], ...] best first; rebuilt when dirty
      sortedAsks: [],
      pendingChecksum: null,
      checksumStrikes: 0,
      checksumDisabled: false,
      prevShown: { buy: new Map(), sell: new Map() },
      flash: {
        buy: new Highlighter(FLASH_MS, FLASH_MAX_PER_SIDE, FLASH_LEVEL_COOLDOWN_MS),
        sell: new Highlighter(FLASH_MS, FLASH_MAX_PER_SIDE, FLASH_LEVEL_COOLDOWN_MS),
      },
    };
  }
  state.book = newBook();

  // ---- REST -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  function apiKey() { return $("api-key").value.trim(); }
  function account() { return $("account").value.trim(); }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      });
    } catch (err) {
      throw new ApiError("network_error", `the gateway did not answer (${err.message})`, 0);
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const error = data && data.error;
      throw new ApiError(
        (error && error.code) || `http_${response.status}`,
        (error && error.message) || text.slice(0, 300) || response.statusText,
        response.status,
      );
    }
    return data;
  }

  /** The account to name in requests: none with an API key or with auth on (the key
   * names it), else the account field. */
  function namedAccount() {
    return apiKey() || state.auth === true ? "" : account();
  }

  function withAccount(body) {
    const name = namedAccount();
    if (name) body.account = name;
    return body;
  }

  // ---- WebSocket feeds with reconnect and backoff ----------------------------------------

  class Feed {
    constructor(name, url, handlers) {
      this.name = name;
      this.url = url;
      this.handlers = handlers;
      this.ws = null;
      this.isOpen = false;
      this.stopped = false;
      this.attempts = 0;
      this.retryTimer = null;
      this.stableTimer = null;
    }

    start() {
      this.stopped = false;
      this.connect();
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.attempts += 1;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this.down(`cannot open ${this.url}: ${err.message}`);
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.isOpen = true;
        clearTimeout(this.stableTimer);
        this.stableTimer = setTimeout(() => { this.attempts = 0; }, STABLE_AFTER_MS);
        this.handlers.open();
        updateStatus();
      };
      ws.onmessage = (event) => {
        let msg;
        try { msg = JSON.parse(event.data); } catch (e) {
          console.warn(`${this.name}: not JSON`, event.data);
          return;
        }
        this.handlers.message(msg);
      };
      ws.onclose = (event) => {
        const reason = event.reason ? `${event.code} ${event.reason}` : `code ${event.code}`;
        this.down(`${this.name} feed closed (${reason})`);
      };
      ws.onerror = () => { /* onclose follows with the code */ };
    }

    detach() {
      clearTimeout(this.stableTimer);
      if (this.ws) {
        const ws = this.ws;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
        this.ws = null;
      }
      this.isOpen = false;
    }

    down(reason) {
      this.detach();
      if (this.stopped) return;
      state.lastProblem = reason;
      this.handlers.down();
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, this.attempts - 1));
      const jittered = delay * (0.75 + Math.random() * 0.5);
      this.retryTimer = setTimeout(() => this.connect(), jittered);
      updateStatus();
    }

    /** Drop this connection and take a fresh one (a fresh snapshot for the book). */
    resync(reason) {
      state.resyncs += 1;
      console.warn(`resync ${this.name}: ${reason}`);
      this.down(`resync: ${reason}`);
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.retryTimer);
      this.detach();
    }
  }

  function feedBase() {
    const url = new URL(state.info.feed_url);
    // A hub bound to every interface advertises 0.0.0.0: reach it where the page came from.
    if (["0.0.0.0", "[::]", "::"].includes(url.hostname)) url.hostname = location.hostname;
    return `${url.protocol}//${url.host}`;
  }

  function startFeeds() {
    stopFeeds();
    const symbol = encodeURIComponent(state.symbol);
    const base = feedBase();
    state.feeds.market = new Feed("market data", `${base}/ws/market_data/${symbol}`, {
      open() { refreshOpenOrders(); /* orders may have changed while we were away */ },
      message: onMarketMessage,
      down() {
        state.book.synced = false;
        markDirty("book");
      },
    });
    state.feeds.trades = new Feed("trades", `${base}/ws/trades?symbol=${symbol}`, {
      open() { loadTradeHistory(); },
      message: onTradeMessage,
      down() { state.tradesLoaded = false; },
    });
    state.feeds.market.start();
    state.feeds.trades.start();
    updateStatus();
  }

  function stopFeeds() {
    for (const name of ["market", "trades"]) {
      if (state.feeds[name]) state.feeds[name].stop();
      state.feeds[name] = null;
    }
  }

  function updateStatus() {
    const el = $("status");
    const market = state.feeds.market;
    const trades = state.feeds.trades;
    let status = "connecting";
    if (!state.info) {
      status = state.everLive ? "reconnecting" : "connecting";
    } else if (market && trades && market.isOpen && trades.isOpen && state.book.synced) {
      status = "live";
      state.everLive = true;
    } else if (state.everLive) {
      status = "reconnecting";
    }
    if (el.dataset.state !== status) {
      el.dataset.state = status;
      el.textContent = status;
    }
    const details = [
      `book_seq ${state.book.seq ?? "—"}`,
      `resyncs ${state.resyncs}`,
      state.book.checksumDisabled ? "checksum check off (kept failing after fresh snapshots)" : "checksum verified",
    ];
    if (state.lastProblem) details.push(`last problem: ${state.lastProblem}`);
    el.title = details.join(" · ");
  }

  // ---- order book -----------------------------------------------------------------------

  function onMarketMessage(msg) {
    switch (msg.type) {
      case "snapshot":
        loadSnapshot(msg);
        break;
      case "l2update":
        applyUpdate(msg);
        break;
      case "depth":
        // The ?depth=N form, should a hub only offer it: replace the top levels.
        loadSnapshot(msg);
        break;
      case "error":
        console.warn("feed hub error", msg);
        break;
      default:
        console.warn("unexpected market data message", msg);
    }
  }

  function loadSnapshot(msg) {
    const book = state.book;
    book.bids = new Map((msg.bids || []).map(([price, qty]) => [price, qty]));
    book.asks = new Map((msg.asks || []).map(([price, qty]) => [price, qty]));
    book.seq = msg.book_seq;
    book.synced = true;
    book.pendingChecksum = null;
    markDirty("book");
    updateStatus();
  }

  function applyUpdate(msg) {
    const book = state.book;
    if (!book.synced) return;                       // a snapshot is on its way
    if (msg.book_seq <= book.seq) return;           // already in the snapshot
    if (msg.book_seq !== book.seq + 1) {
      state.feeds.market.resync(`book_seq gap: expected ${book.seq + 1}, got ${msg.book_seq}`);
      return;
    }
    for (const [side, price, qty] of msg.changes || []) {
      const levels = side === "buy" ? book.bids : book.asks;
      if (Number(qty) === 0) levels.delete(price);
      else levels.set(price, qty);
    }
    book.seq = msg.book_seq;
    if (msg.checksum !== undefined && msg.checksum !== null) book.pendingChecksum = Number(msg.checksum) >>> 0;
    markDirty("book");
  }

  function sortBook() {
    const book = state.book;
    book.sortedBids = [...book.bids].sort((a, b) => Number(b[0]) - Number(a[0]));
    book.sortedAsks = [...book.asks].sort((a, b) => Number(a[0]) - Number(b[0]));
  }

  /** Compare the newest update's checksum with the local book; resync on a mismatch. */
  function verifyChecksum() {
    const book = state.book;
    if (book.pendingChecksum === null || book.checksumDisabled || !book.synced) return;
    const expected = book.pendingChecksum;
    book.pendingChecksum = null;
    const actual = bookChecksum(book.sortedAsks, book.sortedBids);
    if (actual === expected) {
      book.checksumStrikes = 0;
      return;
    }
    book.checksumStrikes += 1;
    if (book.checksumStrikes >= CHECKSUM_STRIKES) {
      // Mismatches right after fresh snapshots mean the hub computes it differently:
      // resyncing forever would not help, so stop checking and say so in the status.
      book.checksumDisabled = true;
      console.error(`book checksum keeps failing (got ${actual}, hub says ${expected}); check disabled`);
      updateStatus();
      return;
    }
    state.feeds.market.resync(`checksum mismatch at book_seq ${book.seq}: ${actual} != ${expected}`);
  }

  // ---- trades ---------------------------------------------------------------------------

  let tradeRefillTimer = null;

  function onTradeMessage(msg) {
    if (msg.type !== "trade") {
      if (msg.type === "error") console.warn("feed hub error", msg);
      return;
    }
    if (msg.symbol && msg.symbol !== state.symbol) return;
    const trades = state.trades;
    const last = trades.length ? trades[trades.length - 1].trade_id : null;
    if (state.tradesLoaded && last !== null && msg.trade_id > last + 1) {
      // trade_id is contiguous per symbol: fetch what the feed skipped.
      clearTimeout(tradeRefillTimer);
      tradeRefillTimer = setTimeout(loadTradeHistory, 300);
    }
    insertTrade(msg);
    applyTradeToCandles(msg);
    markDirty("trades");
    maybeRefreshOrdersAfterTrade(msg);
  }

  function insertTrade(trade) {
    const id = trade.trade_id;
    if (state.tradeIds.has(id)) return;
    state.tradeIds.add(id);
    const trades = state.trades;
    const record = {
      trade_id: id,
      symbol: trade.symbol,
      price: trade.price,
      quantity: trade.quantity,
      aggressor_side: trade.aggressor_side,
      maker_order_id: trade.maker_order_id,
      taker_order_id: trade.taker_order_id,
      maker_fee: trade.maker_fee,
      taker_fee: trade.taker_fee,
      timestamp: trade.timestamp,
      ms: parseTime(trade.timestamp),
      px: Number(trade.price),
    };
    if (!trades.length || id > trades[trades.length - 1].trade_id) {
      trades.push(record);
    } else {
      let lo = 0;
      let hi = trades.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (trades[mid].trade_id < id) lo = mid + 1;
        else hi = mid;
      }
      trades.splice(lo, 0, record);
      state.tapeRebuild = true;
    }
    if (trades.length > TRADE_LOG_MAX) {
      for (const old of trades.splice(0, trades.length - TRADE_LOG_MAX)) state.tradeIds.delete(old.trade_id);
    }
  }

  async function loadTradeHistory() {
    const generation = state.generation;
    const symbol = state.symbol;
    try {
      const data = await api("GET", `/trades/${encodeURIComponent(symbol)}?limit=${TRADE_HISTORY}`);
      if (generation !== state.generation) return;
      for (const trade of data.trades || []) insertTrade(trade);
      state.tradesLoaded = true;
      state.tapeRebuild = true;
      markDirty("trades");
    } catch (err) {
      if (generation !== state.generation) return;
      state.lastProblem = `trade history: ${err.code}: ${err.message}`;
      updateStatus();
      clearTimeout(tradeRefillTimer);
      tradeRefillTimer = setTimeout(loadTradeHistory, 2000);
    }
  }

  function tapeTrades() {
    return state.trades.slice(-TAPE_ROWS).reverse();
  }

  const tapeFlash = new Highlighter(TAPE_FLASH_MS, TAPE_FLASH_MAX, 0);
  let tapeFlashTimer = null;

  /** Take the highlight off tape rows whose flash is over (rows are not redrawn). */
  function dropTapeFlashes(now) {
    for (const row of $("tape-body").querySelectorAll("tr.fresh")) {
      if (tapeFlash.elapsed(row.dataset.tradeId, now) === null) row.classList.remove("fresh");
    }
  }

  function scheduleTapeFlashCleanup() {
    if (tapeFlashTimer) return;
    const wait = tapeFlash.nextEnd(performance.now());
    if (wait === null) return;
    tapeFlashTimer = setTimeout(() => {
      tapeFlashTimer = null;
      dropTapeFlashes(performance.now());
      scheduleTapeFlashCleanup();
    }, wait + 20);
  }

  function tapeRow(trade, fresh) {
    const side = trade.aggressor_side === "buy" ? "buy" : "sell";
    return `<tr data-trade-id="${esc(trade.trade_id)}" data-side="${side}"${fresh ? ' class="fresh"' : ""}>`
      + `<td title="${esc(trade.timestamp)} · #${esc(trade.trade_id)}">${clockTime(trade.ms, true)}</td>`
      + `<td class="${side}">${side}</td>`
      + `<td class="num ${side}">${esc(trade.price)}</td>`
      + `<td class="num">${esc(trade.quantity)}</td>`
      + `<td class="num">${esc(trade.maker_fee)}</td>`
      + `<td class="num">${esc(trade.taker_fee)}</td></tr>`;
  }

  function renderTape() {
    const body = $("tape-body");
    const trades = state.trades;
    const newest = trades.length ? trades[trades.length - 1].trade_id : null;
    if (!state.tapeRebuild && state.tapeShownMaxId !== null && newest !== null) {
      // Common case: a few new trades, all newer than the ones shown. Prepend only them.
      const fresh = [];
      for (let i = trades.length - 1; i >= 0 && trades[i].trade_id > state.tapeShownMaxId; i--) {
        fresh.push(trades[i]);
        if (fresh.length > TAPE_ROWS) break;
      }
      if (fresh.length <= TAPE_ROWS) {
        if (fresh.length) {
          const now = performance.now();
          dropTapeFlashes(now);
          // Newest first: in a burst, only the newest few flash.
          const html = fresh.map((t) => tapeRow(t, tapeFlash.start(String(t.trade_id), now)));
          body.insertAdjacentHTML("afterbegin", html.join(""));
          scheduleTapeFlashCleanup();
          while (body.rows.length > TAPE_ROWS) body.deleteRow(body.rows.length - 1);
        }
        state.tapeShownMaxId = newest;
        $("tape-empty").hidden = trades.length > 0;
        return;
      }
    }
    body.innerHTML = tapeTrades().map((t) => tapeRow(t, false)).join("");
    state.tapeShownMaxId = newest;
    state.tapeRebuild = false;
    $("tape-empty").hidden = trades.length > 0;
  }

  // ---- CSV ------------------------------------------------------------------------------

  // The columns are the server's: the header row of GET /trades/{symbol}?format=csv, which
  // the server takes from the one definition of a trade (matcher/protocol.py TRADE_FIELDS).
  // Nothing here lists them, so a field added there is exported here too.
  let csvColumns = null;

  async function loadCsvColumns() {
    if (csvColumns) return csvColumns;
    const symbol = state.symbol;
    let response;
    try {
      response = await fetch(`/trades/${encodeURIComponent(symbol)}?format=csv&limit=1`, { cache: "no-store" });
    } catch (err) {
      throw new ApiError("network_error", `the gateway did not answer (${err.message})`, 0);
    }
    const text = await response.text();
    if (!response.ok) throw new ApiError(`http_${response.status}`, text.slice(0, 300), response.status);
    const header = text.split(/\r?\n/, 1)[0];
    csvColumns = header.split(",").map((c) => c.trim()).filter(Boolean);
    return csvColumns;
  }

  function csvField(value) {
    const text = String(value ?? "");
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  async function exportCsv() {
    let columns;
    try {
      columns = await loadCsvColumns();
    } catch (err) {
      $("export-csv").title = `CSV columns unavailable: ${err.code} ${err.message}`;
      console.warn("CSV columns", err);
      return;
    }
    const lines = [columns.join(",")];
    for (const trade of tapeTrades()) lines.push(columns.map((c) => csvField(trade[c])).join(","));
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    link.href = url;
    link.download = `${state.symbol}-trades-${stamp}.csv`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---- ladder and ticker ----------------------------------------------------------------

  function formatQty(value) {
    return value.toFixed(state.rules ? state.rules.qtyDecimals : 4);
  }
  function formatPrice(value) {
    return value.toFixed(state.rules ? state.rules.priceDecimals : 2);
  }

  function ladderLevels() {
    const rowHeight = 20;
    const height = $("bids").clientHeight || 200;
    return Math.max(3, Math.min(60, Math.floor(height / rowHeight)));
  }

  function ladderRows(levels, side, count, maxTotal, cumulative) {
    const prev = state.book.prevShown[side];
    const flash = state.book.flash[side];
    const now = performance.now();
    const shown = new Map();
    const rows = [];
    for (let i = 0; i < Math.min(count, levels.length); i++) {
      const [price, qty] = levels[i];
      const width = maxTotal > 0 ? (cumulative[i] / maxTotal) * 100 : 0;
      const changed = prev.has(price) ? prev.get(price) !== qty : prev.size > 0;
      if (changed) flash.start(price, now);
      // A row drawn again mid-flash continues its animation where it was.
      const elapsed = flash.elapsed(price, now);
      const flashing = elapsed === null ? "" : ` flash" style="animation-delay:-${Math.round(elapsed)}ms`;
      shown.set(price, qty);
      rows.push(
        `<div class="ladder-row${flashing}" data-side="${side}" data-price="${esc(price)}" `
        + `data-quantity="${esc(qty)}" title="click: use this price">`
        + `<div class="bar" style="width:${width.toFixed(2)}%"></div>`
        + `<span class="price">${esc(price)}</span><span>${esc(qty)}</span>`
        + `<span>${formatQty(cumulative[i])}</span></div>`,
      );
    }
    state.book.prevShown[side] = shown;
    return rows;
  }

  function cumulate(levels, count) {
    const totals = [];
    let sum = 0;
    for (let i = 0; i < Math.min(count, levels.length); i++) {
      sum += Number(levels[i][1]);
      totals.push(sum);
    }
    return totals;
  }

  function renderLadder() {
    const book = state.book;
    const count = ladderLevels();
    const asks = book.sortedAsks;
    const bids = book.sortedBids;
    const askTotals = cumulate(asks, count);
    const bidTotals = cumulate(bids, count);
    const maxTotal = Math.max(askTotals[askTotals.length - 1] || 0, bidTotals[bidTotals.length - 1] || 0);
    // Asks read upwards from the spread: the best ask sits just above it.
    $("asks").innerHTML = ladderRows(asks, "sell", count, maxTotal, askTotals).reverse().join("");
    $("bids").innerHTML = ladderRows(bids, "buy", count, maxTotal, bidTotals).join("");
    scheduleLadderFlashCleanup();
    $("book-seq").textContent = book.seq === null ? "seq —" : `seq ${book.seq}`;

    const bestBid = bids.length ? bids[0][0] : null;
    const bestAsk = asks.length ? asks[0][0] : null;
    $("best-bid").textContent = bestBid || "—";
    $("best-bid").title = bestBid ? `${bids[0][1]} at ${bestBid}` : "";
    $("best-ask").textContent = bestAsk || "—";
    $("best-ask").title = bestAsk ? `${asks[0][1]} at ${bestAsk}` : "";
    let spreadText = "—";
    let ladderText = "—";
    if (bestBid && bestAsk) {
      const spread = Number(bestAsk) - Number(bestBid);
      const mid = (Number(bestAsk) + Number(bestBid)) / 2;
      const bps = mid > 0 ? (spread / mid) * 10000 : 0;
      spreadText = `${formatPrice(spread)} (${bps.toFixed(1)} bps)`;
      ladderText = `<span>spread ${formatPrice(spread)} · ${bps.toFixed(1)} bps</span><span class="muted">mid ${formatPrice(mid)}</span>`;
    } else if (!book.synced) {
      ladderText = '<span class="muted">waiting for the book…</span>';
    } else if (!bestBid && !bestAsk) {
      ladderText = '<span class="muted">empty book</span>';
    } else {
      ladderText = `<span class="muted">one-sided book</span>`;
    }
    $("spread").textContent = spreadText;
    $("ladder-spread").innerHTML = ladderText;
  }

  let ladderFlashTimer = null;

  /** Draw the ladder again when the next flash is over, so its highlight goes away. */
  function scheduleLadderFlashCleanup() {
    if (ladderFlashTimer) return;
    const now = performance.now();
    const waits = [state.book.flash.buy.nextEnd(now), state.book.flash.sell.nextEnd(now)]
      .filter((wait) => wait !== null);
    if (!waits.length) return;
    ladderFlashTimer = setTimeout(() => {
      ladderFlashTimer = null;
      markDirty("ladder");
    }, Math.min(...waits) + 20);
  }

  function renderLast() {
    const el = $("last-price");
    const trades = state.trades;
    if (!trades.length) {
      el.textContent = "—";
      el.className = "";
      document.title = `${state.symbol || ""} · matchwire`;
      return;
    }
    const last = trades[trades.length - 1];
    const prev = trades.length > 1 ? trades[trades.length - 2] : null;
    el.textContent = last.price;
    el.className = prev && last.px > prev.px ? "up" : prev && last.px < prev.px ? "down" : "";
    document.title = `${last.price} · ${state.symbol} · matchwire`;
  }

  // ---- canvas charts --------------------------------------------------------------------

  function readPalette() {
    const css = getComputedStyle(document.body);
    const v = (name) => css.getPropertyValue(name).trim();
    state.palette = {
      text: v("--text"), muted: v("--muted"), grid: v("--grid"), border: v("--border"),
      panel: v("--panel"), panel2: v("--panel-2"), accent: v("--accent"),
      buy: v("--buy"), sell: v("--sell"), buyFill: v("--buy-fill"), sellFill: v("--sell-fill"),
    };
  }

  /** Size the backing store for the device pixel ratio; returns a context in CSS pixels. */
  function prepareCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    return { ctx, width, height };
  }

  /** Round tick values (1, 2, 5 x 10^k) covering [min, max]. */
  function niceTicks(min, max, count) {
    const span = max - min;
    if (!(span > 0)) return [min];
    const raw = span / Math.max(1, count);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  /** Decimals that tell consecutive ticks apart (a step of 0.5 needs one). */
  function tickDecimals(ticks) {
    if (ticks.length < 2) return state.rules ? state.rules.priceDecimals : 2;
    const step = Math.abs(ticks[1] - ticks[0]);
    return Math.max(0, Math.min(8, Math.ceil(-Math.log10(step) - 1e-9)));
  }

  function compactNumber(value) {
    const abs = Math.abs(value);
    if (abs === 0) return "0";
    if (abs >= 1e9) return `${(value / 1e9).toFixed(1)}B`;
    if (abs >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
    if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
    if (abs >= 100) return value.toFixed(0);
    if (abs >= 1) return value.toFixed(2).replace(/\.?0+$/, "");
    return value.toPrecision(2);
  }

  /**
   * Labels centred under their ticks, each moved inside [lo, hi] when it would stick out
   * (a tick at the very edge of the plot, as on a one-sided book), and dropped when it
   * would overlap the label before it. [{text, x0, x1}] in CSS pixels, left to right.
   */
  function axisLabels(ctx, ticks, lo, hi) {
    const labels = [];
    for (const [text, at] of ticks) {
      const w = ctx.measureText(text).width;
      const x0 = Math.max(lo, Math.min(hi - w, at - w / 2));
      const previous = labels[labels.length - 1];
      if (previous && x0 < previous.x1 + 8) continue;
      labels.push({ text, x0, x1: x0 + w });
    }
    return labels;
  }

  function drawMessage(ctx, width, height, text) {
    ctx.fillStyle = state.palette.muted;
    ctx.textAlign = "center";
    ctx.fillText(text, width / 2, height / 2);
  }

  function drawTooltip(ctx, x, y, lines, width, height) {
    const p = state.palette;
    const padding = 6;
    const lineHeight = 14;
    const boxWidth = Math.max(...lines.map((l) => ctx.measureText(l).width)) + padding * 2;
    const boxHeight = lines.length * lineHeight + padding * 2 - 2;
    let bx = x + 12;
    let by = y - boxHeight - 8;
    if (bx + boxWidth > width - 4) bx = x - boxWidth - 12;
    if (by < 4) by = Math.min(height - boxHeight - 4, y + 12);
    ctx.fillStyle = p.panel2;
    ctx.strokeStyle = p.border;
    ctx.lineWidth = 1;
    ctx.fillRect(bx, by, boxWidth, boxHeight);
    ctx.strokeRect(bx + 0.5, by + 0.5, boxWidth - 1, boxHeight - 1);
    ctx.fillStyle = p.text;
    ctx.textAlign = "left";
    lines.forEach((line, i) => ctx.fillText(line, bx + padding, by + padding + lineHeight * i + 6));
  }

  function depthSeries() {
    const book = state.book;
    const toSeries = (levels) => {
      let sum = 0;
      return levels.slice(0, DEPTH_CHART_LEVELS).map(([price, qty]) => {
        sum += Number(qty);
        return [Number(price), sum];
      });
    };
    return { bids: toSeries(book.sortedBids), asks: toSeries(book.sortedAsks) };
  }

  function drawDepth() {
    const canvas = $("depth-chart");
    const { ctx, width, height } = prepareCanvas(canvas);
    const p = state.palette;
    const { bids, asks } = depthSeries();
    if (!bids.length && !asks.length) {
      drawMessage(ctx, width, height, state.book.synced ? "Empty book" : "Waiting for the book…");
      canvas._geometry = null;
      state.charts.depth = null;
      $("depth-legend").textContent = "cumulative size by price";
      return;
    }
    const bestBid = bids.length ? bids[0][0] : null;
    const bestAsk = asks.length ? asks[0][0] : null;
    const mid = bestBid !== null && bestAsk !== null ? (bestBid + bestAsk) / 2 : (bestBid ?? bestAsk);
    const tick = state.rules ? Number(state.rules.tick_size) : 0.01;
    // The x-range is a price band around the mid, never decided by size: at most mid ± 2%
    // (the usual "2% market depth"), narrowed to the farthest of the 50 best levels a side
    // that lie inside it, and at least ± 10 ticks. Levels outside the band are left off
    // (the ladder lists them), so a big bid at 1.00 cannot squeeze the spread. A spread
    // wider than the band widens it to the best bid and ask.
    const band = Math.max(mid * DEPTH_BAND, Math.abs(mid - (bestBid ?? mid)), Math.abs((bestAsk ?? mid) - mid));
    let reach = 0;
    for (const series of [bids, asks]) {
      for (const [price] of series.slice(0, DEPTH_BAND_LEVELS)) {
        const distance = Math.abs(price - mid);
        if (distance <= band && distance > reach) reach = distance;
      }
    }
    const half = Math.max(reach * 1.08, tick * 10);
    const percent = (half / mid) * 100;
    const legend = `cumulative size · mid ± ${percent < 0.01 ? "< 0.01" : percent.toPrecision(2)}%`;
    if ($("depth-legend").textContent !== legend) $("depth-legend").textContent = legend;
    const xMin = mid - half;
    const xMax = mid + half;
    const inRange = (series, within) => series.filter(([price]) => within(price));
    const visibleBids = inRange(bids, (price) => price >= xMin);
    const visibleAsks = inRange(asks, (price) => price <= xMax);
    const yTop = Math.max(
      visibleBids.length ? visibleBids[visibleBids.length - 1][1] : 0,
      visibleAsks.length ? visibleAsks[visibleAsks.length - 1][1] : 0,
      bids.length ? bids[0][1] : 0,
      asks.length ? asks[0][1] : 0,
    ) * 1.12 || 1;

    const left = 44;
    const right = 8;
    const top = 10;
    const bottom = 20;
    const plotWidth = Math.max(10, width - left - right);
    const plotHeight = Math.max(10, height - top - bottom);
    const x = (price) => left + ((price - xMin) / (xMax - xMin)) * plotWidth;
    const y = (size) => top + plotHeight - (size / yTop) * plotHeight;

    // grid and axes
    ctx.strokeStyle = p.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = p.muted;
    ctx.textAlign = "right";
    for (const t of niceTicks(0, yTop, 4)) {
      const yy = Math.round(y(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(width - right, yy);
      ctx.stroke();
      ctx.fillText(compactNumber(t), left - 6, yy);
    }
    const priceTicks = niceTicks(xMin, xMax, Math.max(2, Math.floor(plotWidth / 90)));
    const priceDecimals = tickDecimals(priceTicks);
    // from just right of the size axis's "0" to the canvas's right edge
    const xLabels = axisLabels(ctx, priceTicks.map((t) => [t.toFixed(priceDecimals), x(t)]),
      left - 4, width - 2);
    ctx.textAlign = "left";
    for (const label of xLabels) ctx.fillText(label.text, label.x0, height - bottom / 2);

    const area = (series, color, fill, direction) => {
      if (!series.length) return;
      const edge = direction < 0 ? xMin : xMax;
      ctx.beginPath();
      ctx.moveTo(x(series[0][0]), y(0));
      ctx.lineTo(x(series[0][0]), y(series[0][1]));
      for (let i = 1; i < series.length; i++) {
        const px = x(Math.max(xMin, Math.min(xMax, series[i][0])));
        ctx.lineTo(px, y(series[i - 1][1]));
        ctx.lineTo(px, y(series[i][1]));
        if ((direction < 0 && series[i][0] < xMin) || (direction > 0 && series[i][0] > xMax)) break;
      }
      const lastInRange = series.filter(([price]) => (direction < 0 ? price >= xMin : price <= xMax));
      const tail = lastInRange.length ? lastInRange[lastInRange.length - 1][1] : series[0][1];
      ctx.lineTo(x(edge), y(tail));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.lineTo(x(edge), y(0));
      ctx.closePath();
      ctx.fillStyle = fill;
      ctx.fill();
    };
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, plotWidth, plotHeight);
    ctx.clip();
    area(bids, p.buy, p.buyFill, -1);
    area(asks, p.sell, p.sellFill, 1);
    ctx.restore();

    // mid line
    ctx.setLineDash([3, 3]);
    ctx.strokeStyle = p.muted;
    ctx.beginPath();
    ctx.moveTo(Math.round(x(mid)) + 0.5, top);
    ctx.lineTo(Math.round(x(mid)) + 0.5, top + plotHeight);
    ctx.stroke();
    ctx.setLineDash([]);

    canvas._geometry = { left, top, plotWidth, plotHeight, xMin, xMax, mid, bids, asks };
    state.charts.depth = { width, height, xMin, xMax, mid, yTop, xLabels };
    const hover = state.hover.depth;
    if (hover && hover.x >= left && hover.x <= left + plotWidth) {
      const price = xMin + ((hover.x - left) / plotWidth) * (xMax - xMin);
      const isBid = price < mid;
      const series = isBid ? bids : asks;
      let size = 0;
      for (const [levelPrice, cumulative] of series) {
        if (isBid ? levelPrice >= price : levelPrice <= price) size = cumulative;
        else break;
      }
      ctx.strokeStyle = p.muted;
      ctx.beginPath();
      ctx.moveTo(Math.round(hover.x) + 0.5, top);
      ctx.lineTo(Math.round(hover.x) + 0.5, top + plotHeight);
      ctx.stroke();
      drawTooltip(ctx, hover.x, Math.max(top + 20, y(size)), [
        `${isBid ? "bids ≥" : "asks ≤"} ${formatPrice(price)}`,
        `cumulative ${formatQty(size)}`,
      ], width, height);
    }
  }

  // ---- candles: GET /candles/{symbol}, then each trade from the feed ------------------------

  const INTERVAL_MS = {
    "1s": 1000, "1m": 60000, "5m": 300000, "15m": 900000, "1h": 3600000, "4h": 14400000, "1d": 86400000,
  };
  const CANDLES_LIMIT = 300;
  let candleLoads = 0;

  function candleRecord(c) {
    return {
      ms: parseTime(c.open_time), open: Number(c.open), high: Number(c.high), low: Number(c.low),
      close: Number(c.close), volume: Number(c.volume), trades: c.trade_count,
    };
  }

  async function loadCandles() {
    if (!state.symbol || state.chartMode !== "candles") return;
    const generation = state.generation;
    const interval = $("candle-interval").value;
    const load = ++candleLoads;
    state.candles = null;
    state.candleError = null;
    markDirty("price");
    const params = new URLSearchParams({ interval, limit: String(CANDLES_LIMIT) });
    try {
      const data = await api("GET", `/candles/${encodeURIComponent(state.symbol)}?${params}`);
      if (generation !== state.generation || load !== candleLoads) return;
      const list = (data.candles || []).map(candleRecord);
      state.candles = { interval, ms: INTERVAL_MS[interval], list, fetches: load };
      // Trades that arrived while the request was out: the candle answer may predate them.
      for (const trade of state.trades) if (trade.ms >= (list.length ? list[list.length - 1].ms : 0)) {
        applyTradeToCandles(trade, true);
      }
    } catch (err) {
      if (generation !== state.generation || load !== candleLoads) return;
      state.candleError = err;
    }
    markDirty("price");
  }

  /** A trade updates the open candle, or opens the next one. */
  function applyTradeToCandles(trade, replaying) {
    const series = state.candles;
    if (!series) return;
    const ms = trade.ms !== undefined ? trade.ms : parseTime(trade.timestamp);
    const px = Number(trade.price);
    const qty = Number(trade.quantity);
    if (!Number.isFinite(ms) || !Number.isFinite(px)) return;
    if (!series.seen) series.seen = new Set();
    if (series.seen.has(trade.trade_id)) return;
    const open = Math.floor(ms / series.ms) * series.ms;
    const list = series.list;
    const last = list[list.length - 1];
    if (last && last.ms === open) {
      // The fetched candle may already hold this trade (it was in the answer): only trades
      // newer than the fetch change it, which the feed's order guarantees after the load.
      if (replaying) return;
      last.high = Math.max(last.high, px);
      last.low = Math.min(last.low, px);
      last.close = px;
      last.volume += qty;
      last.trades += 1;
    } else if (!last || open > last.ms) {
      list.push({ ms: open, open: px, high: px, low: px, close: px, volume: qty, trades: 1 });
      if (list.length > 1000) list.shift();
    } else {
      return;
    }
    series.seen.add(trade.trade_id);
    series.updates = (series.updates || 0) + 1;
  }

  function drawCandles() {
    const canvas = $("price-chart");
    const { ctx, width, height } = prepareCanvas(canvas);
    const p = state.palette;
    const series = state.candles;
    if (!series || !series.list.length) {
      const text = state.candleError
        ? `Candles: ${state.candleError.code}`
        : series ? "No candles yet" : "Loading candles…";
      drawMessage(ctx, width, height, text);
      state.charts.candles = series ? { count: 0, interval: series.interval, fetches: series.fetches } : null;
      state.charts.price = null;
      return;
    }
    const left = 8;
    const top = 10;
    const bottom = 20;
    let pMin = Infinity;
    let pMax = -Infinity;
    const textProbe = ctx.measureText(String(series.list[series.list.length - 1].close)).width;
    const right = Math.max(64, Math.ceil(textProbe) + 16);
    const plotWidth = Math.max(10, width - left - right);
    // Wide candles while there are few, down to 6 px when the history fills the panel.
    const slot = Math.max(6, Math.min(18, Math.floor(plotWidth / series.list.length)));
    const fit = Math.max(1, Math.floor(plotWidth / slot));
    const shown = series.list.slice(-fit);
    let vMax = 0;
    for (const c of shown) {
      if (c.low < pMin) pMin = c.low;
      if (c.high > pMax) pMax = c.high;
      if (c.volume > vMax) vMax = c.volume;
    }
    const tick = state.rules ? Number(state.rules.tick_size) : 0.01;
    const pad = Math.max((pMax - pMin) * 0.08, tick * 5, pMax * 0.0005);
    pMin -= pad;
    pMax += pad;
    const plotHeight = Math.max(20, height - top - bottom);
    const volHeight = Math.round(plotHeight * 0.22);
    const priceHeight = plotHeight - volHeight - 4;
    const y = (price) => top + priceHeight - ((price - pMin) / (pMax - pMin)) * priceHeight;
    const xOf = (i) => left + plotWidth - (shown.length - i) * slot + slot / 2;

    const priceTicks = niceTicks(pMin, pMax, 4);
    const decimals = tickDecimals(priceTicks);
    ctx.strokeStyle = p.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = p.muted;
    ctx.textAlign = "left";
    for (const t of priceTicks) {
      const yy = Math.round(y(t)) + 0.5;
      if (yy < top || yy > top + priceHeight) continue;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + plotWidth, yy);
      ctx.stroke();
      ctx.fillText(t.toFixed(decimals), left + plotWidth + 6, yy);
    }
    const volTop = top + priceHeight + 4;
    const body = Math.max(1, slot - 3);
    shown.forEach((c, i) => {
      const up = c.close >= c.open;
      const colour = up ? p.buy : p.sell;
      const cx = Math.round(xOf(i)) + 0.5;
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.beginPath();
      ctx.moveTo(cx, y(c.high));
      ctx.lineTo(cx, y(c.low));
      ctx.stroke();
      const y0 = y(Math.max(c.open, c.close));
      const y1 = y(Math.min(c.open, c.close));
      ctx.fillRect(cx - body / 2, y0, body, Math.max(1, y1 - y0));
      const vh = vMax > 0 ? (c.volume / vMax) * volHeight : 0;
      ctx.globalAlpha = 0.45;
      ctx.fillRect(cx - body / 2, volTop + volHeight - vh, body, Math.max(1, vh));
      ctx.globalAlpha = 1;
    });
    // Time labels: the first and last shown candle's open time.
    ctx.fillStyle = p.muted;
    ctx.textBaseline = "middle";
    const withSeconds = series.ms < 60000;
    const firstLabel = clockTime(shown[0].ms, false);
    const lastLabel = clockTime(shown[shown.length - 1].ms, false);
    const firstText = withSeconds ? firstLabel : firstLabel.slice(0, 5);
    const lastText = withSeconds ? lastLabel : lastLabel.slice(0, 5);
    const firstX = Math.max(left, xOf(0) - slot / 2);
    const lastWidth = ctx.measureText(lastText).width;
    const xLabels = [];
    // The first label only where it clears the last one.
    const firstWidth = ctx.measureText(firstText).width;
    if (shown.length > 1 && firstX + firstWidth + 12 < left + plotWidth - lastWidth) {
      ctx.textAlign = "left";
      ctx.fillText(firstText, firstX, height - 8);
      xLabels.push({ text: firstText, x0: firstX, x1: firstX + firstWidth });
    }
    ctx.textAlign = "right";
    ctx.fillText(lastText, left + plotWidth, height - 8);
    xLabels.push({ text: lastText, x0: left + plotWidth - lastWidth, x1: left + plotWidth });
    // The last close as a tag on the axis.
    const lastCandle = shown[shown.length - 1];
    const ty = Math.max(top + 7, Math.min(top + priceHeight - 7, y(lastCandle.close)));
    ctx.fillStyle = lastCandle.close >= lastCandle.open ? p.buy : p.sell;
    ctx.fillRect(left + plotWidth + 2, ty - 8, right - 4, 16);
    ctx.fillStyle = p.panel;
    ctx.textAlign = "left";
    ctx.fillText(lastCandle.close.toFixed(state.rules ? state.rules.priceDecimals : decimals), left + plotWidth + 6, ty);
    state.charts.price = null;
    state.charts.candles = {
      count: series.list.length, shown: shown.length, interval: series.interval, fetches: series.fetches,
      updates: series.updates || 0, width, height, slot, xLabels,
      last: { ...lastCandle }, first: { ...series.list[0] },
      background: getComputedStyle($("price-chart").closest(".panel")).backgroundColor,
      colours: { up: p.buy, down: p.sell },
    };
  }

  function setChartMode(mode) {
    state.chartMode = mode;
    $("candle-interval").disabled = mode !== "candles";
    $("price-title").textContent = mode === "candles" ? "Candles" : "Last price";
    $("price-legend").textContent = mode === "candles" ? "OHLC and volume from /candles" : "trades over time";
    state.candles = null;
    if (mode === "candles") loadCandles();
    markDirty("price");
  }

  function drawPrice() {
    const canvas = $("price-chart");
    const { ctx, width, height } = prepareCanvas(canvas);
    const p = state.palette;
    const points = state.trades;
    if (!points.length) {
      drawMessage(ctx, width, height, state.tradesLoaded ? "No trades yet" : "Loading trades…");
      canvas._geometry = null;
      state.charts.price = null;
      return;
    }
    const tick = state.rules ? Number(state.rules.tick_size) : 0.01;
    let tMin = points[0].ms;
    let tMax = points[points.length - 1].ms;
    if (!(tMax > tMin)) {
      tMin -= 30000;
      tMax += 30000;
    }
    tMax += (tMax - tMin) * 0.02;
    let pMin = Infinity;
    let pMax = -Infinity;
    for (const point of points) {
      if (point.px < pMin) pMin = point.px;
      if (point.px > pMax) pMax = point.px;
    }
    const pad = Math.max((pMax - pMin) * 0.1, tick * 5, pMax * 0.0005);
    pMin -= pad;
    pMax += pad;

    const priceTicks = niceTicks(pMin, pMax, 4);
    const priceDecimals = tickDecimals(priceTicks);
    const last = points[points.length - 1];
    // The axis is as wide as its widest text (the last-price tag or a label), so a long
    // price is not cut at the canvas's edge.
    const textWidth = Math.max(ctx.measureText(last.price).width,
      ...priceTicks.map((t) => ctx.measureText(t.toFixed(priceDecimals)).width));
    const left = 8;
    const right = Math.max(64, Math.ceil(textWidth) + 12);
    const top = 10;
    const bottom = 20;
    const plotWidth = Math.max(10, width - left - right);
    const plotHeight = Math.max(10, height - top - bottom);
    const x = (ms) => left + ((ms - tMin) / (tMax - tMin)) * plotWidth;
    const y = (price) => top + plotHeight - ((price - pMin) / (pMax - pMin)) * plotHeight;

    ctx.strokeStyle = p.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = p.muted;
    ctx.textAlign = "left";
    const lastY = y(last.px);
    const TAG_HALF = 8;     // the tag is 16 px tall, centred on the last price
    const LABEL_HALF = 7;   // an 11 px label, centred on its tick
    const tag = { text: last.price, x0: left + plotWidth + 1, x1: width - 1,
      y0: lastY - TAG_HALF, y1: lastY + TAG_HALF };
    const yLabels = [];
    for (const t of priceTicks) {
      const yy = Math.round(y(t)) + 0.5;
      // No label (nor grid line) under the last-price tag, with 2 px to spare.
      if (Math.abs(yy - lastY) < TAG_HALF + LABEL_HALF + 2) continue;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + plotWidth, yy);
      ctx.stroke();
      const text = t.toFixed(priceDecimals);
      ctx.fillText(text, left + plotWidth + 6, yy);
      yLabels.push({ text, x0: left + plotWidth + 6, x1: left + plotWidth + 6 + ctx.measureText(text).width,
        y0: yy - LABEL_HALF, y1: yy + LABEL_HALF });
    }
    ctx.textAlign = "center";
    const labels = Math.max(2, Math.floor(plotWidth / 110));
    for (let i = 0; i <= labels; i++) {
      const ms = tMin + ((tMax - tMin) * i) / labels;
      const xx = x(ms);
      if (xx < left + 24 || xx > left + plotWidth - 24) continue;
      ctx.fillText(clockTime(ms, tMax - tMin < 20000), xx, height - bottom / 2);
    }

    // Step line: the last price holds until the next trade prints.
    ctx.beginPath();
    ctx.moveTo(x(points[0].ms), y(points[0].px));
    for (let i = 1; i < points.length; i++) {
      ctx.lineTo(x(points[i].ms), y(points[i - 1].px));
      ctx.lineTo(x(points[i].ms), y(points[i].px));
    }
    ctx.lineTo(left + plotWidth, y(last.px));
    ctx.strokeStyle = p.accent;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.lineTo(left + plotWidth, top + plotHeight);
    ctx.lineTo(x(points[0].ms), top + plotHeight);
    ctx.closePath();
    ctx.globalAlpha = 0.12;
    ctx.fillStyle = p.accent;
    ctx.fill();
    ctx.globalAlpha = 1;

    if (points.length <= 200) {
      for (const point of points) {
        ctx.fillStyle = point.aggressor_side === "buy" ? p.buy : p.sell;
        ctx.beginPath();
        ctx.arc(x(point.ms), y(point.px), 2.2, 0, Math.PI * 2);
        ctx.fill();
      }
    }

    // last price tag on the axis
    const tagColor = last.aggressor_side === "buy" ? p.buy : p.sell;
    ctx.setLineDash([2, 3]);
    ctx.strokeStyle = tagColor;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(lastY) + 0.5);
    ctx.lineTo(left + plotWidth, Math.round(lastY) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = tagColor;
    ctx.fillRect(tag.x0, tag.y0, tag.x1 - tag.x0, tag.y1 - tag.y0);
    ctx.fillStyle = "#fff";
    ctx.textAlign = "left";
    ctx.fillText(last.price, left + plotWidth + 5, lastY);

    canvas._geometry = { left, plotWidth };
    state.charts.price = { width, height, pMin, pMax, tag, yLabels };
    const hover = state.hover.price;
    if (hover && hover.x >= left && hover.x <= left + plotWidth) {
      const ms = tMin + ((hover.x - left) / plotWidth) * (tMax - tMin);
      let lo = 0;
      let hi = points.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (points[mid].ms <= ms) lo = mid;
        else hi = mid - 1;
      }
      const point = points[lo];
      const px = x(point.ms);
      ctx.strokeStyle = p.muted;
      ctx.beginPath();
      ctx.moveTo(Math.round(px) + 0.5, top);
      ctx.lineTo(Math.round(px) + 0.5, top + plotHeight);
      ctx.stroke();
      ctx.fillStyle = p.text;
      ctx.beginPath();
      ctx.arc(px, y(point.px), 3.5, 0, Math.PI * 2);
      ctx.fill();
      drawTooltip(ctx, px, y(point.px), [
        `${clockTime(point.ms, true)} · #${point.trade_id}`,
        `${point.aggressor_side} ${point.quantity} @ ${point.price}`,
      ], width, height);
    }
  }

  function attachHover(canvasId, key) {
    const canvas = $(canvasId);
    canvas.addEventListener("mousemove", (event) => {
      const rect = canvas.getBoundingClientRect();
      state.hover[key] = { x: event.clientX - rect.left, y: event.clientY - rect.top };
      markDirty(key);
    });
    canvas.addEventListener("mouseleave", () => {
      state.hover[key] = null;
      markDirty(key);
    });
  }

  // ---- render loop ----------------------------------------------------------------------

  let frameRequested = false;

  function markDirty(what) {
    if (what === "book") {
      state.dirty.book = true;
      state.dirty.depth = true;
    } else if (what === "trades") {
      state.dirty.trades = true;
      state.dirty.price = true;
    } else {
      state.dirty[what] = true;
    }
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(render);
    }
  }

  function markAllDirty() {
    state.tapeRebuild = true;
    for (const key of Object.keys(state.dirty)) state.dirty[key] = true;
    markDirty("book");
  }

  function render() {
    frameRequested = false;
    // Take the flags first: drawing may mark things again (a resync), for the next frame.
    const dirty = { ...state.dirty };
    state.dirty = { book: false, ladder: false, trades: false, depth: false, price: false };
    if (!state.palette) readPalette();
    if (dirty.book) {
      sortBook();
      verifyChecksum();
    }
    if (dirty.book || dirty.ladder) {
      renderLadder();
      updateStatus();
    }
    if (dirty.trades) {
      renderTape();
      renderLast();
    }
    if (dirty.depth) drawDepth();
    if (dirty.price) {
      if (state.chartMode === "candles") drawCandles();
      else drawPrice();
    }
  }

  // ---- order entry ----------------------------------------------------------------------

  function selectedSide() {
    return $("side-sell").checked ? "sell" : "buy";
  }

  /** Post-only applies to GTC limit orders only (the API refuses it otherwise). */
  function applyTimeInForce() {
    const gtc = $("time-in-force").value === "gtc";
    $("post-only").disabled = !gtc;
    if (!gtc) $("post-only").checked = false;
  }

  function applyOrderTypeVisibility() {
    const type = $("order-type").value;
    for (const row of document.querySelectorAll("#order-form [data-for]")) {
      row.hidden = !row.dataset.for.split(" ").includes(type);
    }
    $("price").placeholder = type === "take_profit" ? "limit price (empty: market)" : "limit price";
    updateSubmitLabel();
    updateHint();
  }

  function updateSubmitLabel() {
    const side = selectedSide();
    const button = $("submit-order");
    const base = state.rules ? state.rules.base : "";
    const type = $("order-type").selectedOptions[0].textContent.replace(/ \(.*\)$/, "");
    button.textContent = `${side === "buy" ? "Buy" : "Sell"} ${base} · ${type}`.trim();
    button.classList.toggle("buy", side === "buy");
    button.classList.toggle("sell", side === "sell");
  }

  function updateHint() {
    const rules = state.rules;
    if (!rules) return;
    const pct = (rate) => `${(Number(rate) * 100).toFixed(3).replace(/\.?0+$/, "")}%`;
    const parts = [
      `tick ${rules.tick_size}`, `lot ${rules.lot_size}`, `min ${rules.min_quantity}`,
      `fees ${pct(rules.maker_fee_rate)} maker / ${pct(rules.taker_fee_rate)} taker`,
    ];
    const qty = Number($("quantity").value);
    const priceVisible = !$("price").closest(".form-row").hidden;
    const price = priceVisible ? Number($("price").value) : NaN;
    if (qty > 0 && price > 0) parts.push(`notional ≈ ${formatPrice(qty * price)} ${rules.quote}`);
    $("order-hint").textContent = parts.join(" · ");
  }

  function visibleValue(id) {
    const input = $(id);
    if (input.closest(".form-row").hidden) return "";
    return input.value.trim();
  }

  /** The request body from the visible fields. No client-side checks: the API is the judge. */
  function buildOrder() {
    const type = $("order-type").value;
    const body = { symbol: state.symbol, order_type: type, side: selectedSide() };
    const quantity = $("quantity").value.trim();
    if (quantity) body.quantity = quantity;
    const price = visibleValue("price");
    if (price) body.price = price;
    const stopPrice = visibleValue("stop-price");
    if (stopPrice) body.stop_price = stopPrice;
    if (type === "limit") {
      body.time_in_force = $("time-in-force").value;
      if ($("post-only").checked) body.post_only = true;
    }
    const clientOrderId = $("client-order-id").value.trim();
    if (clientOrderId) body.client_order_id = clientOrderId;
    const stp = visibleValue("stp");
    if (stp) body.stp = stp;
    return withAccount(body);
  }

  const FIELD_INPUTS = {
    stop_price: "stop-price", price: "price", quantity: "quantity", time_in_force: "time-in-force",
    post_only: "post-only", client_order_id: "client-order-id", stp: "stp", order_type: "order-type",
    symbol: "symbol-select", api_key: "api-key",
  };
  // The field an error code is about, before any field its message names (the message
  // of would_trigger_immediately says "price", meaning the stop price).
  const CODE_FIELDS = {
    would_trigger_immediately: ["stop_price"],
    invalid_quantity: ["quantity"],
    duplicate_client_order_id: ["client_order_id"],
    post_only_would_take: ["price", "post_only"],
    unauthorized: ["api_key"],
    unknown_symbol: ["symbol"],
  };
  // When the message names no field: the fields a code may be about, in order.
  const CODE_FALLBACKS = { invalid_price: ["price", "stop_price"] };

  /** Is the input part of the form as it is shown (not in a row hidden for this type)? */
  function isShown(input) {
    const row = input.closest(".form-row");
    return !row || !row.hidden;
  }

  /**
   * The input an API error is about, among `inputs` (field name -> element id) that are
   * shown: the code's own field, else a field the message names, else the code's
   * fallbacks; null when none fits.
   */
  function errorInput(err, inputs) {
    const message = String(err.message || "");
    const named = Object.keys(inputs).filter((name) => new RegExp(`\\b${name}\\b`).test(message));
    const candidates = [...(CODE_FIELDS[err.code] || []), ...named, ...(CODE_FALLBACKS[err.code] || [])];
    for (const name of candidates) {
      const input = inputs[name] && $(inputs[name]);
      if (input && isShown(input)) return input;
    }
    return null;
  }

  function clearInvalid(scope) {
    for (const el of document.querySelectorAll(`${scope} [aria-invalid="true"]`)) el.removeAttribute("aria-invalid");
  }

  function clearOrderError() {
    $("order-error").hidden = true;
    $("order-error").textContent = "";
    clearInvalid("#order-form");
    clearInvalid("#identity-form");
  }

  function showOrderError(err) {
    const el = $("order-error");
    el.innerHTML = `<code>${esc(err.code)}</code> ${esc(err.message)}`;
    el.hidden = false;
    const input = errorInput(err, FIELD_INPUTS);
    if (input) input.setAttribute("aria-invalid", "true");
  }

  function showNotice(html, warn) {
    const el = $("order-notice");
    el.innerHTML = html;
    el.classList.toggle("warn", Boolean(warn));
    el.hidden = false;
  }

  function orderFills(order) {
    let quantity = 0;
    let notional = 0;
    let fee = 0;
    for (const trade of order.trades || []) {
      const q = Number(trade.quantity);
      quantity += q;
      notional += q * Number(trade.price);
      fee += Number(trade.taker_order_id === order.order_id ? trade.taker_fee : trade.maker_fee);
    }
    return { quantity, average: quantity > 0 ? notional / quantity : null, fee, count: (order.trades || []).length };
  }

  function describeOrder(order) {
    const fills = orderFills(order);
    const price = order.price ? ` @ ${order.price}` : "";
    const stop = order.stop_price ? ` stop ${order.stop_price}` : "";
    let text = `${order.side} ${order.order_type} ${order.quantity}${price}${stop}`;
    if (fills.count) {
      text += ` · filled ${order.filled_quantity} avg ${formatPrice(fills.average)} · fee ${fills.fee.toFixed(8).replace(/\.?0+$/, "")}`;
    }
    if (order.reject_reason) text += ` · ${order.reject_reason}`;
    return text;
  }

  function addResult(entry) {
    state.results.unshift({ ...entry, at: Date.now() });
    state.results.length = Math.min(state.results.length, RESULTS_MAX);
    renderResults(true);
  }

  function renderResults(freshFirst) {
    const list = $("order-results");
    list.innerHTML = state.results.map((r, i) => {
      const status = r.error ? "error" : r.order.status;
      const id = r.order && r.order.order_id !== undefined ? ` #${esc(r.order.order_id)}` : "";
      const detail = r.error ? `<code>${esc(r.error.code)}</code> ${esc(r.error.message)}` : esc(describeOrder(r.order));
      return `<li class="${freshFirst && i === 0 ? "fresh" : ""}" data-status="${esc(status)}"`
        + `${r.order ? ` data-order-id="${esc(r.order.order_id)}"` : ""}>`
        + `<span class="when">${clockTime(r.at, false)}</span>`
        + `<span class="what">${esc(r.action)} ${esc(r.symbol)}${id}</span>`
        + `<span class="status status-${esc(status)}">${esc(status)}</span>`
        + `<span class="detail">${detail}</span></li>`;
    }).join("");
    $("order-results-empty").hidden = state.results.length > 0;
  }

  async function submitOrder(event) {
    event.preventDefault();
    clearOrderError();
    $("order-notice").hidden = true;
    const body = buildOrder();
    const endpoint = STOP_TYPES.has(body.order_type) ? "/submit_stop_order" : "/submit_order";
    const button = $("submit-order");
    button.disabled = true;
    try {
      const order = await api("POST", endpoint, body);
      addResult({ action: "submit", symbol: body.symbol, order });
      if (order.status === "rejected") {
        showNotice(`Order #${esc(order.order_id)} rejected: <code>${esc(order.reject_reason || "rejected")}</code>`, true);
      } else {
        showNotice(`Order #${esc(order.order_id)} <b>${esc(order.status)}</b> · ${esc(describeOrder(order))}`, false);
      }
      $("client-order-id").value = "";
    } catch (err) {
      showOrderError(err);
      addResult({ action: "submit", symbol: body.symbol, error: { code: err.code, message: err.message } });
    } finally {
      button.disabled = false;
      refreshOpenOrders();
    }
  }

  // ---- open orders ----------------------------------------------------------------------

  let ordersInFlight = false;
  let ordersAgain = false;
  let ordersThrottle = null;

  async function refreshOpenOrders() {
    if (!state.symbol) return;
    if (ordersInFlight) {
      ordersAgain = true;
      return;
    }
    ordersInFlight = true;
    const generation = state.generation;
    const params = new URLSearchParams({ status: "open" });
    if (namedAccount()) params.set("account", namedAccount());
    try {
      const data = await api("GET", `/orders/${encodeURIComponent(state.symbol)}?${params}`);
      if (generation === state.generation) {
        state.openOrders = (data.orders || []).slice().sort((a, b) => (b.order_id > a.order_id ? 1 : -1));
        renderOpenOrders();
        if (openOrdersErrorFrom === "refresh") setOpenOrdersError(null);
        state.openOrdersLoads += 1;
      }
    } catch (err) {
      if (generation === state.generation) setOpenOrdersError(err, "refresh");
    } finally {
      ordersInFlight = false;
      if (ordersAgain) {
        ordersAgain = false;
        refreshOpenOrders();
      }
    }
  }

  // What the error above the list is about: a failed poll ("refresh"), which the next good
  // poll clears, or a cancel or amend ("action"), which a poll must not hide.
  let openOrdersErrorFrom = null;

  function setOpenOrdersError(err, from = "action") {
    const el = $("open-orders-error");
    openOrdersErrorFrom = err ? from : null;
    if (!err) {
      el.hidden = true;
      return;
    }
    el.innerHTML = `<code>${esc(err.code)}</code> ${esc(err.message)}`;
    el.hidden = false;
  }

  /** Our orders may have filled, or a pending stop triggered: look again (throttled). */
  function maybeRefreshOrdersAfterTrade(trade) {
    const ours = state.openOrders.some((o) => o.order_id === trade.maker_order_id
      || o.order_id === trade.taker_order_id || o.status === "pending");
    if (!ours || ordersThrottle) return;
    ordersThrottle = setTimeout(() => {
      ordersThrottle = null;
      refreshOpenOrders();
    }, 300);
  }

  const TYPE_LABELS = {
    market: "market", limit: "limit", stop_loss: "stop loss", stop_limit: "stop limit",
    take_profit: "take profit", ioc: "ioc", fok: "fok",
  };

  /** Who "My open orders" belongs to, as far as the page knows. */
  function ownerLabel() {
    if (apiKey() || state.auth === true) {
      const named = state.openOrders.length ? state.openOrders[0].account : null;
      return named || "API key's account";
    }
    return account() || "anonymous";
  }

  function openOrderRow(o) {
    const side = o.side === "sell" ? "sell" : "buy";
    let type = TYPE_LABELS[o.order_type] || o.order_type;
    if (o.order_type === "limit") type += ` ${o.time_in_force || ""}${o.post_only ? " post" : ""}`;
    const status = o.status === "partially_filled" ? "partial" : o.status;
    const price = o.price ?? "market";
    const stop = o.stop_price ? `<small>stop ${esc(o.stop_price)}</small>` : "";
    const id = esc(o.order_id);
    // Pending stops are not amendable (the API answers stop_not_amendable): no button.
    const amend = o.status === "pending" ? ""
      : `<button type="button" data-amend="${id}" data-testid="amend-${id}" aria-label="Amend order ${id}"`
        + `${state.amend && state.amend.orderId === String(o.order_id) ? " aria-expanded=\"true\"" : ""}>Amend</button>`;
    return `<tr data-order-id="${id}" data-status="${esc(o.status)}"`
      + ` title="${esc(o.timestamp)}${o.client_order_id ? ` · client id ${esc(o.client_order_id)}` : ""}">`
      + `<td><span class="${side}">${side}</span> ${esc(type)}<small>#${id} · ${esc(status)}</small></td>`
      + `<td class="num">${esc(price)}${stop}</td>`
      + `<td class="num">${esc(o.quantity)}<small>filled ${esc(o.filled_quantity)}</small></td>`
      + `<td class="num"><div class="actions">${amend}<button type="button" data-cancel="${id}"`
      + ` data-testid="cancel-${id}" aria-label="Cancel order ${id}">Cancel</button></div></td></tr>`;
  }

  /** The inline editor under an order's row: new total quantity and price. */
  function amendRow(o) {
    const id = esc(o.order_id);
    return `<tr class="amend-row" data-amend-for="${id}"><td colspan="4">`
      + `<form id="amend-form" class="amend-form" data-order-id="${id}" novalidate autocomplete="off"`
      + ` aria-label="Amend order ${id}">`
      + `<label for="amend-price">Price</label>`
      + `<input id="amend-price" name="price" inputmode="decimal" value="${esc(o.price ?? "")}">`
      + `<label for="amend-quantity">Qty</label>`
      + `<input id="amend-quantity" name="quantity" inputmode="decimal" value="${esc(o.quantity)}">`
      + `<button type="submit" id="amend-save" data-testid="amend-save">Save</button>`
      + `<button type="button" id="amend-close" data-testid="amend-close" class="ghost">Close</button>`
      + `<small class="amend-note">quantity is the new total (filled ${esc(o.filled_quantity)}); a new price`
      + ` or a larger quantity loses time priority</small></form></td></tr>`;
  }

  function renderOpenOrders() {
    $("open-orders-empty").hidden = state.openOrders.length > 0;
    $("open-account").textContent = `${state.openOrders.length} · ${ownerLabel()}`;
    const editing = state.amend
      && state.openOrders.find((o) => String(o.order_id) === state.amend.orderId);
    if (state.amend && !editing) {
      // The order filled or was cancelled while it was being edited.
      setOpenOrdersError({ code: "order_not_open", message: `order ${state.amend.orderId} is no longer open` });
      state.amend = null;
    }
    // An open editor is kept as it is (what was typed, the focus) while the rows around
    // it are drawn again.
    const body = $("open-orders-body");
    const editor = editing
      ? body.querySelector(`tr.amend-row[data-amend-for="${CSS.escape(state.amend.orderId)}"]`) : null;
    const focused = editor && editor.contains(document.activeElement) ? document.activeElement : null;
    const selection = focused && typeof focused.selectionStart === "number"
      ? [focused.selectionStart, focused.selectionEnd] : null;
    // Two lines per order keep the table inside the narrow column: what / where / how much.
    body.innerHTML = state.openOrders
      .map((o) => openOrderRow(o) + (o === editing && !editor ? amendRow(o) : "")).join("");
    if (editor) {
      body.querySelector(`tr[data-order-id="${CSS.escape(state.amend.orderId)}"]`).after(editor);
      if (focused) {
        focused.focus();
        if (selection) focused.setSelectionRange(selection[0], selection[1]);
      }
    }
  }

  function openAmend(orderId) {
    state.amend = { orderId: String(orderId) };
    setOpenOrdersError(null);
    renderOpenOrders();
    const input = $("amend-quantity");
    if (input) {
      input.focus();
      input.select();
    }
  }

  function closeAmend() {
    state.amend = null;
    renderOpenOrders();
  }

  const AMEND_INPUTS = { price: "amend-price", quantity: "amend-quantity" };

  async function submitAmend(form) {
    const order = state.openOrders.find((o) => String(o.order_id) === form.dataset.orderId);
    if (!order) {
      closeAmend();
      return;
    }
    clearInvalid("#amend-form");
    const price = $("amend-price").value.trim();
    const quantity = $("amend-quantity").value.trim();
    // Only what changed is sent: an unchanged quantity must not look like a new total.
    const body = withAccount({ symbol: order.symbol || state.symbol, order_id: order.order_id });
    if (price !== (order.price ?? "") && !(price && order.price && Number(price) === Number(order.price))) {
      body.price = price;
    }
    if (quantity !== order.quantity && !(quantity && Number(quantity) === Number(order.quantity))) {
      body.quantity = quantity;
    }
    if (!("price" in body) && !("quantity" in body)) {
      closeAmend();
      return;
    }
    const save = $("amend-save");
    save.disabled = true;
    try {
      const amended = await api("POST", "/amend_order", body);
      addResult({ action: "amend", symbol: body.symbol, order: amended });
      state.openOrders = state.openOrders.map((o) => (String(o.order_id) === String(amended.order_id) ? amended : o))
        .filter((o) => o.status === "new" || o.status === "partially_filled" || o.status === "pending");
      setOpenOrdersError(null);
      closeAmend();
    } catch (err) {
      setOpenOrdersError(err);
      addResult({ action: "amend", symbol: body.symbol, error: { code: err.code, message: err.message } });
      if ($("amend-form")) {
        save.disabled = false;
        const input = errorInput(err, AMEND_INPUTS);
        if (input) input.setAttribute("aria-invalid", "true");
      }
    } finally {
      refreshOpenOrders();
    }
  }

  async function cancelOrder(button) {
    const raw = button.dataset.cancel;
    const orderId = /^\d+$/.test(raw) ? Number(raw) : raw;
    button.disabled = true;
    button.textContent = "…";
    const body = withAccount({ symbol: state.symbol, order_id: orderId });
    try {
      const order = await api("POST", "/cancel_order", body);
      addResult({ action: "cancel", symbol: body.symbol, order });
      state.openOrders = state.openOrders.filter((o) => String(o.order_id) !== String(raw));
      if (state.amend && state.amend.orderId === String(raw)) state.amend = null;
      renderOpenOrders();
      setOpenOrdersError(null);
    } catch (err) {
      setOpenOrdersError(err);
      addResult({ action: "cancel", symbol: body.symbol, error: { code: err.code, message: err.message } });
      button.disabled = false;
      button.textContent = "Cancel";
    } finally {
      refreshOpenOrders();
    }
  }

  /** "Cancel all": the first click asks, the second (Yes) sends one POST /cancel_all. */
  function askCancelAll() {
    const count = state.openOrders.length;
    $("cancel-all-question").textContent =
      `Cancel ${count ? `all ${count}` : "all"} of ${account() || "your"} orders on ${state.symbol}?`;
    $("cancel-all").hidden = true;
    $("cancel-all-confirm").hidden = false;
    $("cancel-all-yes").focus();
  }

  function closeCancelAll() {
    $("cancel-all-confirm").hidden = true;
    $("cancel-all").hidden = false;
  }

  async function cancelAll() {
    const yes = $("cancel-all-yes");
    yes.disabled = true;
    const body = withAccount({ symbol: state.symbol });
    const notice = $("open-orders-notice");
    try {
      const data = await api("POST", "/cancel_all", body);
      const cancelled = data.cancelled || [];
      for (const order of cancelled) addResult({ action: "cancel_all", symbol: body.symbol, order });
      const ids = new Set(cancelled.map((o) => String(o.order_id)));
      state.openOrders = state.openOrders.filter((o) => !ids.has(String(o.order_id)));
      if (state.amend && ids.has(state.amend.orderId)) state.amend = null;
      renderOpenOrders();
      setOpenOrdersError(null);
      notice.textContent = cancelled.length
        ? `Cancelled ${cancelled.length} order${cancelled.length === 1 ? "" : "s"} on ${body.symbol}: `
          + cancelled.map((o) => `#${o.order_id}`).join(", ")
        : `Nothing to cancel on ${body.symbol}.`;
      notice.hidden = false;
    } catch (err) {
      notice.hidden = true;
      setOpenOrdersError(err);
      addResult({ action: "cancel_all", symbol: body.symbol, error: { code: err.code, message: err.message } });
    } finally {
      yes.disabled = false;
      closeCancelAll();
      refreshOpenOrders();
    }
  }

  // ---- theme ----------------------------------------------------------------------------

  function applyTheme(theme) {
    document.body.dataset.theme = theme;
    const button = $("theme-toggle");
    const other = theme === "dark" ? "light" : "dark";
    button.textContent = other === "light" ? "☀ Light" : "☾ Dark";
    button.setAttribute("aria-label", `Switch to the ${other} theme`);
    button.dataset.theme = theme;
    readPalette();
    markAllDirty();
  }

  function toggleTheme() {
    const next = document.body.dataset.theme === "dark" ? "light" : "dark";
    store.set(STORAGE.theme, next);
    applyTheme(next);
  }

  // ---- symbols --------------------------------------------------------------------------

  function rulesFor(symbol) {
    const raw = state.info.symbols[symbol];
    const [base, quote] = symbol.includes("-") ? symbol.split("-") : [symbol, ""];
    return { ...raw, priceDecimals: decimalsOf(raw.tick_size), qtyDecimals: decimalsOf(raw.lot_size), base, quote };
  }

  function switchSymbol(symbol) {
    if (!state.info || !state.info.symbols[symbol]) return;
    state.generation += 1;
    state.symbol = symbol;
    closeCancelAll();
    $("open-orders-notice").hidden = true;
    state.candles = null;
    if (state.chartMode === "candles") setTimeout(loadCandles, 0);
    state.rules = rulesFor(symbol);
    state.book = newBook();
    state.trades = [];
    state.tradeIds = new Set();
    state.tradesLoaded = false;
    state.tapeShownMaxId = null;
    state.openOrders = [];
    state.amend = null;
    state.everLive = false;
    state.lastProblem = "";
    // An error or notice about the other symbol's order would now be misleading.
    clearOrderError();
    $("order-notice").hidden = true;
    setOpenOrdersError(null);
    $("symbol-select").value = symbol;
    store.set(STORAGE.symbol, symbol);
    if (location.hash !== `#${symbol}`) history.replaceState(null, "", `#${symbol}`);
    $("server-csv").href = `/trades/${encodeURIComponent(symbol)}?format=csv&limit=${TRADE_HISTORY}`;
    $("server-csv").setAttribute("download", `${symbol}-trades-server.csv`);
    renderOpenOrders();
    applyOrderTypeVisibility();
    markAllDirty();
    startFeeds();
    refreshOpenOrders();
  }

  async function loadInfo() {
    let attempt = 0;
    for (;;) {
      try {
        return await api("GET", "/");
      } catch (err) {
        attempt += 1;
        state.lastProblem = `GET /: ${err.code}: ${err.message}`;
        updateStatus();
        const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  // ---- identity -------------------------------------------------------------------------

  /**
   * This browser's own account for auth off, `web-` and six random letters or digits,
   * made once and kept in localStorage: the shared `anonymous` would show (and let this
   * page cancel) everybody's anonymous orders.
   */
  function browserAccount() {
    let name = store.get(STORAGE.defaultAccount);
    if (!name) {
      const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
      const bytes = crypto.getRandomValues(new Uint8Array(6));
      name = `web-${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("")}`;
      store.set(STORAGE.defaultAccount, name);
    }
    return name;
  }

  /** With auth on the API key names the account: the account field has no say. */
  function applyAuthMode() {
    const auth = state.auth;
    const key = $("api-key");
    const name = $("account");
    key.placeholder = auth === true ? "required" : auth === false ? "not needed" : "if auth is on";
    key.title = auth === true
      ? "Auth is on: every order request needs a key, sent as X-API-Key; the key names the account"
      : auth === false ? "Auth is off: no key needed; a key, if set, is sent as X-API-Key"
        : "Sent as X-API-Key; with auth on, the key names the account";
    name.disabled = auth === true;
    if (auth === true) {
      name.value = "";  // shown only: the saved name stays in localStorage for auth off
      name.placeholder = "the key's";
    }
    name.title = auth === true ? "Auth is on: the API key names the account"
      : "Your account while auth is off (this browser's own by default); not sent when an API key is set";
    renderOpenOrders();
  }

  // ---- wiring ---------------------------------------------------------------------------

  function wire() {
    $("theme-toggle").addEventListener("click", toggleTheme);
    $("symbol-select").addEventListener("change", (e) => switchSymbol(e.target.value));
    window.addEventListener("hashchange", () => {
      const symbol = decodeURIComponent(location.hash.slice(1));
      if (symbol && symbol !== state.symbol) switchSymbol(symbol);
    });

    const form = $("order-form");
    form.addEventListener("submit", submitOrder);
    $("order-type").addEventListener("change", applyOrderTypeVisibility);
    $("time-in-force").addEventListener("change", applyTimeInForce);
    for (const id of ["side-buy", "side-sell"]) $(id).addEventListener("change", updateSubmitLabel);
    form.addEventListener("input", (event) => {
      if (event.target.getAttribute("aria-invalid")) event.target.removeAttribute("aria-invalid");
      updateHint();
    });

    // Enter in an identity field only saves it (the change event below), never reloads.
    $("identity-form").addEventListener("submit", (event) => event.preventDefault());
    $("account").value = store.get(STORAGE.account) || browserAccount();
    $("api-key").value = store.get(STORAGE.apiKey) || "";
    for (const [id, key] of [["account", STORAGE.account], ["api-key", STORAGE.apiKey]]) {
      $(id).addEventListener("input", () => store.set(key, $(id).value.trim()));
      $(id).addEventListener("change", () => {
        // An emptied account field means this browser's own account, not the shared one.
        if (id === "account" && !account()) $("account").value = browserAccount();
        $(id).removeAttribute("aria-invalid");
        state.openOrders = [];
        state.amend = null;
        renderOpenOrders();
        refreshOpenOrders();
      });
    }

    // A click on a ladder level copies its price into the form (the stop price for a stop
    // loss, which has no limit price).
    $("ladder").addEventListener("click", (event) => {
      const row = event.target.closest(".ladder-row[data-price]");
      if (!row) return;
      clearOrderError();
      if ($("order-type").value === "market") $("order-type").value = "limit";
      applyOrderTypeVisibility();
      const target = $("order-type").value === "stop_loss" ? $("stop-price") : $("price");
      target.value = row.dataset.price;
      target.focus();
      updateHint();
    });

    $("chart-mode").addEventListener("change", () => setChartMode($("chart-mode").value));
    $("candle-interval").addEventListener("change", () => loadCandles());
    $("cancel-all").addEventListener("click", askCancelAll);
    $("cancel-all-no").addEventListener("click", closeCancelAll);
    $("cancel-all-yes").addEventListener("click", () => { if (!$("cancel-all-yes").disabled) cancelAll(); });

    const orders = $("open-orders");
    orders.addEventListener("click", (event) => {
      const cancel = event.target.closest("button[data-cancel]");
      if (cancel && !cancel.disabled) cancelOrder(cancel);
      const amend = event.target.closest("button[data-amend]");
      if (amend) {
        if (state.amend && state.amend.orderId === amend.dataset.amend) closeAmend();
        else openAmend(amend.dataset.amend);
      }
      if (event.target.closest("#amend-close")) closeAmend();
    });
    orders.addEventListener("submit", (event) => {
      event.preventDefault();
      if (event.target.id === "amend-form" && !$("amend-save").disabled) submitAmend(event.target);
    });
    orders.addEventListener("input", (event) => {
      if (event.target.getAttribute("aria-invalid")) event.target.removeAttribute("aria-invalid");
    });
    orders.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && state.amend) closeAmend();
    });
    $("export-csv").addEventListener("click", exportCsv);

    attachHover("depth-chart", "depth");
    attachHover("price-chart", "price");
    const resize = new ResizeObserver(() => markAllDirty());
    for (const id of ["depth-chart", "price-chart", "bids"]) resize.observe($(id));

    setInterval(() => {
      if (document.visibilityState === "visible") refreshOpenOrders();
    }, OPEN_ORDERS_POLL_MS);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        refreshOpenOrders();
        markAllDirty();
      }
    });
  }

  async function main() {
    applyTheme(document.body.dataset.theme === "light" ? "light" : "dark");
    wire();
    applyOrderTypeVisibility();
    updateStatus();
    state.info = await loadInfo();
    state.auth = typeof state.info.auth === "boolean" ? state.info.auth : null;
    applyAuthMode();
    const symbols = Object.keys(state.info.symbols || {});
    $("symbol-select").innerHTML = symbols.map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join("");
    const fromHash = decodeURIComponent(location.hash.slice(1));
    const saved = store.get(STORAGE.symbol);
    const initial = [fromHash, saved, symbols[0]].find((s) => s && symbols.includes(s));
    if (!initial) {
      state.lastProblem = "the gateway lists no symbols";
      updateStatus();
      return;
    }
    switchSymbol(initial);
    loadCsvColumns().catch((err) => console.warn("CSV columns", err));  // ready before a click
  }

  // Read-only handle for debugging from the console.
  window.matchwire = { state };
  main();
})();
