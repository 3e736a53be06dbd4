// The onsale fan page: one plain script, no framework, no build step.
//
// It speaks docs/protocol.md: the JSON HTTP API for everything a fan asks,
// and one websocket (/ws?session=...) for what the event says unasked
// (place in line, admission, seat changes, hold expiry, purchase). The
// websocket is an accelerator, never a dependency: while it is down the
// page polls `status` instead, and it reconnects with backoff, resending
// `watch` with the queue token so the fan keeps its place.
//
// What the page remembers (localStorage, per browser):
//   onsale.session  the signed session, fan id and name
//   onsale.tokens   "fan:event" -> queue token (resume after a reload, a
//                   new tab, or a restart of the whole system)
//   onsale.holds    "fan:event" -> the hold being checked out, seat labels
//   onsale.orders   "fan:event" -> the confirmed order, with seat labels
//   onsale.baseline "fan:event" -> admitted_through when the fan joined
//                   (the start of the progress bar)
'use strict';

(function () {
  // ---------------------------------------------------------------- basics

  const $ = (id) => document.getElementById(id);
  const SVG_NS = 'http://www.w3.org/2000/svg';
  /** Prices are in cents of one currency; the protocol does not name it. */
  const CURRENCY = 'GBP';
  /** The last minute of a hold is shown as a warning. */
  const HOLD_WARNING_MS = 60_000;
  /** Websocket reconnect backoff: doubles from MIN to MAX, with jitter. */
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 15_000;
  /** Retries of a command answered busy / rate limited before giving up. */
  const BUSY_TRIES_MAX = 8;

  /** Human text for every stable error code (schema/src/error.rs), for
   *  refusals that arrive as values without a message. A server message,
   *  when there is one, always wins. */
  const MESSAGES = {
    bad_request: 'The request is malformed or a field is out of range.',
    malformed_json: 'The request could not be read.',
    payload_too_large: 'The request is too large.',
    unknown_event: 'No event has this id.',
    unknown_section: 'The venue has no such section.',
    unknown_seat: 'The venue has no such seat.',
    unknown_price_level: 'The venue has no such price level.',
    invalid_token: 'Your place in line could not be restored.',
    presale_code_required: 'The presale is on: joining takes the presale code you were sent.',
    invalid_presale_code: 'That presale code is not yours or not for this event.',
    presale_code_used: 'Your presale code already got you a place in line.',
    code_required: 'The presale is on: joining takes the presale code you were sent.',
    code_used: 'Your presale code already got you a place in line.',
    token_expired: 'Your place in line is too old to restore.',
    unauthorized: 'Please sign in again.',
    waiting_room_full: 'Waiting room full, please try again later.',
    sold_out: 'Every ticket is sold.',
    sale_closed: 'The sale is closed.',
    sale_not_open: 'The sale has not opened yet or is paused.',
    not_in_line: 'You have not joined the waiting room for this event.',
    not_admitted: 'It is not your turn yet, or your turn has passed.',
    admission_expired: 'Your shopping window has lapsed.',
    seats_unavailable: 'Some of those seats were just taken.',
    not_enough_seats: 'No block of that many seats together is available here.',
    ticket_limit: 'That is more tickets than you may buy for this event.',
    fair_share: 'Fans behind you each keep a claim on one ticket: please pick fewer seats.',
    already_holding: 'You already hold seats: finish or release them first.',
    hold_not_found: 'That hold no longer exists.',
    hold_expired: 'The checkout deadline passed and the seats were released.',
    payment_late: 'Payment was submitted after the checkout deadline.',
    payment_pending: 'Your payment is already being processed.',
    payment_unknown: 'No payment has this id.',
    busy: 'The event is very busy; please retry in a moment.',
    rate_limited: 'Too many requests; please slow down.',
    internal: 'Something went wrong on our side; nothing was changed.',
  };
  const messageFor = (code) => MESSAGES[code] || code.replace(/_/g, ' ');

  const SALE_TEXT = {
    scheduled: 'Sale not open yet',
    on_sale: 'On sale',
    paused: 'Sale paused',
    sold_out: 'Sold out',
    closed: 'Sale closed',
  };

  // ------------------------------------------------------------- storage

  const storage = {
    get(key, fallback) {
      try {
        const text = localStorage.getItem('onsale.' + key);
        return text == null ? fallback : JSON.parse(text);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        if (value == null) localStorage.removeItem('onsale.' + key);
        else localStorage.setItem('onsale.' + key, JSON.stringify(value));
      } catch (_) { /* private mode or full: the page still works */ }
    },
    // Per fan and event: two people sharing a browser keep apart.
    getFor(key, event) {
      return storage.get(key, {})[forKey(event)];
    },
    setFor(key, event, value) {
      const all = storage.get(key, {});
      if (value == null) delete all[forKey(event)];
      else all[forKey(event)] = value;
      storage.set(key, all);
    },
  };

  const forKey = (event) => `${state.session ? state.session.fan : 0}:${event}`;

  // --------------------------------------------------------------- state

  const state = {
    session: null, // {session, fan, expires_at, name}
    event: null, // the open event's id (a number)
    detail: null, // GET /api/events/{event}
    sale: null, // the sale's state as last seen
    status: null, // the fan's FanStatus for the open event, or null
    screen: null,
    sticky: false, // an outcome screen stays until the fan moves on
    waiting: null, // {position, ahead, admitted_through, eta_ms}
    section: null, // the section whose seats are shown
    sectionDetail: null,
    seatInfo: new Map(), // seat index -> {section, row, seat, label, price}
    selected: new Set(),
    alternative: null,
    hold: null, // {hold, seats, deadline, total_cents, labels}
    paying: false,
    warned: false,
    enteredKey: null,
    lastStatusPoll: 0,
    clockOffsetMs: 0,
    busy: false,
    // Bumped when the fan's own action changes its status (hold placed,
    // payment started): a status read before then is stale and dropped.
    epoch: 0,
  };

  /** Server time, estimated from the Date header when the clocks differ a lot. */
  const serverNow = () => Date.now() + state.clockOffsetMs;

  // ------------------------------------------------------------ the page

  function show(name, sticky) {
    if (state.screen !== name) notice('');
    state.screen = name;
    state.sticky = !!sticky;
    for (const el of document.querySelectorAll('.screen')) {
      el.hidden = el.id !== 'screen-' + name;
    }
    document.body.dataset.screen = name;
    window.scrollTo(0, 0);
  }

  function showError(message) {
    $('error-text').textContent = message;
    $('error').hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error-text').textContent = '';
  }

  function notice(message) {
    $('notice').textContent = message || '';
    $('notice').hidden = !message;
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child != null) node.append(child);
    }
    return node;
  }

  const money = (() => {
    let format;
    try {
      format = new Intl.NumberFormat(undefined, { style: 'currency', currency: CURRENCY });
    } catch (_) {
      format = { format: (n) => n.toFixed(2) };
    }
    return (cents) => format.format(cents / 100);
  })();

  function formatDate(ms) {
    try {
      return new Date(ms).toLocaleString(undefined, {
        weekday: 'short', day: 'numeric', month: 'short', year: 'numeric',
        hour: '2-digit', minute: '2-digit',
      });
    } catch (_) {
      return new Date(ms).toISOString();
    }
  }

  function formatWait(ms) {
    const s = Math.max(1, Math.round(ms / 1000));
    if (s < 60) return `about ${s} s`;
    const m = Math.round(s / 60);
    if (m < 60) return `about ${m} min`;
    return `about ${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function formatClock(ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, code, message, retryAfterS) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfterS = retryAfterS;
    }
  }

  function noteClock(response) {
    const date = Date.parse(response.headers.get('Date') || '');
    if (Number.isNaN(date)) return;
    // The header has whole seconds: only a gap well beyond that counts.
    const offset = date + 500 - Date.now();
    state.clockOffsetMs = Math.abs(offset) > 2_000 ? offset : 0;
  }

  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({}, extraHeaders || {});
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (state.session) headers.Authorization = 'Bearer ' + state.session.session;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (_) {
      throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.', 1);
    }
    noteClock(response);
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) { /* not JSON: reported below */ }
    if (!response.ok || (json && json.reply === 'error')) {
      const code = (json && json.code) || 'http_' + response.status;
      const message = (json && json.message) || text.trim() || `${response.status} ${response.statusText}`;
      const error = new ApiError(response.status, code, message, Number(response.headers.get('Retry-After')) || 1);
      if (response.status === 401) signedOut(message);
      throw error;
    }
    if (json == null) throw new ApiError(response.status, 'internal', 'The server sent an empty or unreadable answer.');
    return json;
  }

  /** `fn` again while the answer is busy or rate limited (bounded). */
  async function retryBusy(fn) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        const again = e instanceof ApiError && (e.status === 429 || e.status === 503);
        if (!again || attempt >= BUSY_TRIES_MAX) throw e;
        await sleep(Math.min(5_000, Math.max(300, e.retryAfterS * 1000)));
      }
    }
  }

  /** One fan command to the open event; `fan` is filled in. */
  function command(cmd, headers) {
    const body = Object.assign({}, cmd, { fan: state.session.fan });
    return retryBusy(() => api('POST', `/api/events/${state.event}/commands`, body, headers));
  }

  // ------------------------------------------------------- proof of work

  /** Codes that a fresh challenge answers. */
  const STAMP_AGAIN = ['stamp_required', 'stamp_stale', 'stamp_future', 'stamp_replayed', 'stamp_insufficient'];

  /** Fetch a challenge for the open event and solve it in a Web Worker,
   *  showing progress; the header to join with (null when none is asked). */
  async function solveStamp() {
    const issued = await api('GET', `/api/events/${state.event}/challenge`);
    if (!issued.bits) return null;
    const expected = Math.pow(2, issued.bits);
    const note = $('join-work');
    note.hidden = false;
    note.textContent = 'Checking you are a person: working…';
    const started = Date.now();
    const counter = await new Promise((resolve, reject) => {
      const worker = new Worker('/stamp-worker.js');
      worker.onmessage = (m) => {
        const d = m.data || {};
        if (d.error) { worker.terminate(); reject(new Error(d.error)); return; }
        if (d.counter != null) { worker.terminate(); resolve(d.counter); return; }
        const pct = Math.min(99, Math.round((d.tries / expected) * 100));
        note.textContent = `Checking you are a person: about ${pct}% (this takes a few seconds)`;
      };
      worker.onerror = (e) => { worker.terminate(); reject(new Error(e.message || 'the solver failed')); };
      worker.postMessage({ challenge: issued.challenge, difficulty: issued.bits });
    });
    note.textContent = `Checked in ${((Date.now() - started) / 1000).toFixed(1)} s.`;
    return { [issued.header]: `${issued.challenge}.${counter}` };
  }

  /** Report a failed request; true if it was handled as an outcome screen. */
  function failed(error) {
    if (!(error instanceof ApiError)) {
      showError(String(error && error.message ? error.message : error));
      return false;
    }
    if (error.status === 401) return true; // signedOut() already showed the login
    if (outcomeForCode(error.code, error.message)) return true;
    showError(error.message);
    return false;
  }

  /** The outcome screen for a business code, if it has one. */
  function outcomeForCode(code, message) {
    switch (code) {
      case 'sold_out':
        showSoldOut(message);
        return true;
      case 'waiting_room_full':
        showFull(message);
        return true;
      case 'sale_closed':
      case 'sale_not_open':
        showClosed(code, message);
        return true;
      case 'hold_expired':
      case 'payment_late':
        showExpired(message);
        return true;
      case 'admission_expired':
        showLapsed(message);
        return true;
      default:
        return false;
    }
  }

  // -------------------------------------------------------- session/login

  function loadSession() {
    const session = storage.get('session', null);
    if (session && session.session && session.expires_at > Date.now() + 5_000) {
      state.session = session;
    } else {
      state.session = null;
      storage.set('session', null);
    }
    renderWho();
  }

  function renderWho() {
    $('who').hidden = !state.session;
    $('who-name').textContent = state.session ? state.session.name : '';
  }

  function signedOut(message) {
    state.session = null;
    storage.set('session', null);
    renderWho();
    wsClose();
    show('login');
    if (message) showError(message);
  }

  async function login(name) {
    clearError();
    const button = $('login-submit');
    button.disabled = true;
    try {
      const session = await retryBusy(() => api('POST', '/api/session', { name }));
      state.session = {
        session: session.session, fan: session.fan, expires_at: session.expires_at, name,
      };
      storage.set('session', state.session);
      renderWho();
      route();
    } catch (e) {
      failed(e);
    } finally {
      button.disabled = false;
    }
  }

  // --------------------------------------------------------------- routing

  function route() {
    clearError();
    notice('');
    if (!state.session) {
      leaveEvent();
      show('login');
      $('login-name').focus();
      return;
    }
    const match = /^#\/event\/(\d+)$/.exec(location.hash);
    if (match) {
      openEvent(Number(match[1]));
      return;
    }
    leaveEvent();
    show('events');
    searchEvents();
  }

  // ------------------------------------------------------------ event list

  function searchQuery() {
    const params = new URLSearchParams();
    const q = $('search-q').value.trim();
    const city = $('search-city').value.trim();
    if (q) params.set('q', q);
    if (city) params.set('city', city);
    const day = (value) => {
      const [y, m, d] = value.split('-').map(Number);
      return new Date(y, m - 1, d).getTime();
    };
    if ($('search-from').value) params.set('from', String(day($('search-from').value)));
    if ($('search-to').value) params.set('to', String(day($('search-to').value) + 86_400_000 - 1));
    const text = params.toString();
    return text ? '?' + text : '';
  }

  async function searchEvents() {
    const list = $('event-list');
    $('event-count').textContent = 'Searching…';
    try {
      const found = await retryBusy(() => api('GET', '/api/events' + searchQuery()));
      const events = found.events || [];
      list.replaceChildren(...events.map(eventItem));
      $('event-count').textContent = events.length === 0
        ? 'No events match your search.'
        : `${events.length} event${events.length === 1 ? '' : 's'}`;
    } catch (e) {
      list.replaceChildren();
      $('event-count').textContent = '';
      failed(e);
    }
  }

  function saleBadge(sale, full) {
    const badge = el('span', { class: 'badge', text: SALE_TEXT[sale] || sale });
    if (sale === 'sold_out' || sale === 'closed') badge.classList.add('bad');
    else if (sale !== 'on_sale') badge.classList.add('dim');
    else if (full) {
      badge.classList.add('warn');
      badge.textContent = 'Waiting room full';
    }
    return badge;
  }

  function eventItem(listing) {
    const link = el('a', {
      href: `#/event/${listing.event}`,
      id: `event-${listing.event}`,
      'data-event': String(listing.event),
      'data-testid': 'event-item',
    },
    el('div', { class: 'name', text: listing.name }),
    el('div', { class: 'meta', text: `${listing.venue} · ${listing.city} · ${formatDate(listing.starts_at)}` }),
    saleBadge(listing.sale, listing.full));
    return el('li', {}, link);
  }

  // ------------------------------------------------------------- one event

  function leaveEvent() {
    if (state.event != null && ws.sock && ws.sock.readyState === WebSocket.OPEN && state.section != null) {
      wsSend({ op: 'view', section: null });
    }
    state.event = null;
    state.detail = null;
    state.status = null;
    state.sale = null;
    state.waiting = null;
    state.section = null;
    state.sectionDetail = null;
    state.selected.clear();
    state.hold = null;
    state.paying = false;
    state.warned = false;
  }

  async function openEvent(event) {
    if (state.event !== event) {
      leaveEvent();
      state.event = event;
      state.seatInfo = new Map();
    }
    show('loading');
    try {
      await loadDetail();
    } catch (e) {
      failed(e);
      if (state.event === event && state.screen === 'loading') show('events');
      return;
    }
    if (state.event !== event) return;
    const stored = storage.getFor('holds', event);
    if (stored) state.hold = stored;
    wsWatch();
    await refreshStatus({ resume: true });
  }

  async function loadDetail() {
    const event = state.event;
    const detail = await retryBusy(() => api('GET', `/api/events/${event}`));
    if (state.event !== event) return;
    state.detail = detail;
    state.sale = (detail.overview && detail.overview.sale) || (detail.listing && detail.listing.sale);
    for (const info of detail.sections || []) {
      // Keep the event's section names for seat labels.
      info.name = info.name || info.id;
    }
    renderEventHead();
    renderVenue($('venue-map'), false);
    renderVenue($('shop-map'), true);
  }

  /** Ask where the fan stands (resuming with the stored token first when
   *  `resume`) and show the matching screen. A `background` poll keeps
   *  quiet about an unreachable or busy server: the connection badge
   *  already says so, and the next poll tries again. */
  async function refreshStatus(options) {
    const event = state.event;
    if (event == null || !state.session) return;
    const token = storage.getFor('tokens', event);
    const epoch = state.epoch;
    try {
      let status;
      if (options && options.resume && token) {
        const reply = await command({ cmd: 'resume', token });
        if (state.event !== event) return;
        if (reply.reply === 'joined') {
          storage.setFor('tokens', event, reply.token || token);
          status = reply.joined.status;
        } else if (reply.reply === 'join_refused') {
          if (reply.refused === 'invalid_token') storage.setFor('tokens', event, null);
          const reread = await command({ cmd: 'status' });
          status = reread.status;
          if (!status) return joinRefused(reply.refused);
        } else {
          status = null;
        }
      } else {
        const reply = await command({ cmd: 'status' });
        status = reply.status;
      }
      if (state.event !== event || state.epoch !== epoch) return;
      state.lastStatusPoll = Date.now();
      applyStatus(status || null);
    } catch (e) {
      if (state.event !== event) return;
      const transient = e.code === 'network' || e.status === 429 || e.status === 503;
      if (options && options.background && transient) return;
      if (e.code === 'invalid_token' || e.code === 'token_expired') {
        storage.setFor('tokens', event, null);
        showError(e.message);
        return refreshStatus();
      }
      failed(e);
      if (state.screen === 'loading') applyStatus(null);
    }
  }

  /** Show the screen for the fan's status. */
  function applyStatus(status) {
    const previous = state.status;
    state.status = status;
    const kind = status ? status.status : null;
    if (kind === 'purchased') return showConfirmation({ order: status.order, seats: status.seats });
    if (state.sticky) {
      refreshOutcomeActions();
      return;
    }
    switch (kind) {
      case 'waiting':
        state.waiting = Object.assign({}, state.waiting || {}, {
          position: status.position, ahead: status.ahead,
        });
        return showWaiting();
      case 'pre_queued':
        // No place yet: places are drawn when the sale opens.
        state.waiting = { position: null, ahead: null };
        return showWaiting();
      case 'admitted':
        return showShop();
      case 'holding':
        return showCheckout(previous);
      case 'expired':
        storage.setFor('tokens', state.event, null);
        return showLapsed();
      default: // not in line, or left
        if (state.sale === 'sold_out') return showSoldOut();
        if (state.sale === 'closed') return showClosed('sale_closed');
        return showEventPage();
    }
  }

  function renderEventHead() {
    const { listing, overview } = state.detail;
    $('event-name').textContent = listing.name;
    const left = overview ? overview.capacity - overview.sold - overview.held : null;
    $('event-meta').textContent = [
      `${listing.venue}, ${listing.city}`,
      formatDate(listing.starts_at),
      left == null ? null : `${left} of ${overview.capacity} tickets available`,
    ].filter(Boolean).join(' · ');
    const badge = saleBadge(state.sale, false);
    $('event-sale').className = badge.className;
    $('event-sale').textContent = badge.textContent;
    const full = overview ? overview.full : listing.full;
    $('event-full').hidden = !full;
    $('waiting-event').textContent = `${listing.name} · ${listing.venue}`;
    $('confirmation-event').textContent = `${listing.name} · ${listing.venue}, ${listing.city} · ${formatDate(listing.starts_at)}`;
  }

  /** Whether the event's presale lasts (joining takes a code). */
  function inPresale() {
    const listing = state.detail && state.detail.listing;
    return !!listing && listing.presale_until != null && serverNow() < listing.presale_until;
  }

  function showEventPage() {
    renderEventHead();
    const listing = state.detail ? state.detail.listing : {};
    const drawn = !!listing.pre_queue_draw && state.sale === 'scheduled';
    $('join').disabled = state.sale === 'closed' || state.sale === 'sold_out';
    $('join').textContent = drawn ? 'Join the pre-queue'
      : state.sale === 'scheduled' ? 'Queue before the sale opens'
        : 'Join the waiting room';
    const access = [];
    if (drawn) {
      access.push('Everyone who joins before the sale opens gets a random place in line when it opens'
        + (listing.opens_at != null ? ` (${formatDate(listing.opens_at)})` : '') + ': no need to rush.');
    }
    if (inPresale()) access.push(`Presale until ${formatDate(listing.presale_until)}: joining takes your presale code.`);
    $('event-access').textContent = access.join(' ');
    $('event-access').hidden = access.length === 0;
    $('presale').hidden = !inPresale();
    show('event');
  }

  // ------------------------------------------------------------ venue map

  /** Section rectangles in map units (0..100), from `map`, or laid out in
   *  a grid when any section has none. */
  function sectionRects(sections) {
    if (sections.every((s) => s.map)) return sections.map((s) => s.map);
    const cols = Math.ceil(Math.sqrt(sections.length));
    const rows = Math.ceil(sections.length / cols);
    const top = 16;
    const w = 96 / cols;
    const h = (98 - top) / rows;
    return sections.map((_, i) => ({
      x: 2 + (i % cols) * w + 0.8, y: top + Math.floor(i / cols) * h + 0.8, width: w - 1.6, height: h - 1.6,
    }));
  }

  function availabilityClass(available, seats) {
    if (available <= 0) return 'none';
    if (available / Math.max(1, seats) < 0.25) return 'few';
    return 'good';
  }

  function renderVenue(map, clickable) {
    const sections = (state.detail && state.detail.sections) || [];
    map.replaceChildren();
    map.classList.toggle('clickable', clickable);
    svg('rect', { class: 'stage', x: 25, y: 2, width: 50, height: 9, rx: 1.5 }, map);
    const label = svg('text', { class: 'stage-label', x: 50, y: 7.6, 'text-anchor': 'middle' }, map);
    label.textContent = 'STAGE';
    const rects = sectionRects(sections);
    // Fit the drawing's height to the sections (map units are 0..100).
    const bottom = Math.max(30, ...rects.map((r) => r.y + r.height)) + 2;
    map.setAttribute('viewBox', `0 0 100 ${Math.min(100, bottom).toFixed(1)}`);
    sections.forEach((section, i) => {
      const r = rects[i];
      const g = svg('g', {
        class: `section ${availabilityClass(section.available, section.seats)}`,
        'data-section': String(section.section),
        id: `${map.id}-section-${section.section}`,
        'data-available': String(section.available),
      }, map);
      if (clickable) {
        g.setAttribute('role', 'button');
        g.setAttribute('tabindex', '0');
      }
      if (clickable && state.section === section.section) g.classList.add('chosen');
      svg('rect', { x: r.x, y: r.y, width: r.width, height: r.height, rx: 1.2 }, g);
      const title = svg('title', {}, g);
      const price = section.price_min_cents === section.price_max_cents
        ? money(section.price_min_cents)
        : `${money(section.price_min_cents)}–${money(section.price_max_cents)}`;
      title.textContent = `${section.name}: ${section.available} of ${section.seats} seats left, ${price}`;
      // Text fits the rectangle: shrink for narrow sections.
      const size = Math.min(2.8, (r.width * 1.6) / Math.max(4, section.name.length), r.height / 3);
      const cx = r.x + r.width / 2;
      const cy = r.y + r.height / 2;
      const name = svg('text', { x: cx, y: cy - size * 0.2, 'text-anchor': 'middle', 'font-size': size.toFixed(2) }, g);
      name.textContent = section.name;
      const sub = svg('text', { class: 'sub', x: cx, y: cy + size * 1.05, 'text-anchor': 'middle', 'font-size': (size * 0.82).toFixed(2) }, g);
      sub.textContent = section.available > 0 ? `${section.available} left` : 'none left';
    });
  }

  // --------------------------------------------------------- waiting room

  async function join() {
    clearError();
    const button = $('join');
    button.disabled = true;
    $('full-retry').disabled = true;
    const baseline = state.detail && state.detail.overview ? state.detail.overview.admitted_through : 0;
    try {
      const code = inPresale() ? $('presale-code').value.trim() : '';
      let stamp = null;
      let solves = 0;
      for (let attempt = 1; ; attempt++) {
        let reply;
        try {
          reply = await command(code ? { cmd: 'join_with_code', code } : { cmd: 'join' }, stamp);
        } catch (e) {
          // Under pressure the event asks for a proof of work: solve one
          // (again, if the last went stale or the difficulty rose).
          if (!(e instanceof ApiError) || !STAMP_AGAIN.includes(e.code) || solves >= 3) throw e;
          solves++;
          stamp = await solveStamp();
          continue;
        }
        if (reply.reply === 'joined') {
          storage.setFor('tokens', state.event, reply.token);
          if (reply.joined.position > 0 && (reply.joined.fresh || storage.getFor('baseline', state.event) == null)) {
            storage.setFor('baseline', state.event, Math.min(baseline, reply.joined.position - 1));
          }
          state.sticky = false;
          wsWatch();
          applyStatus(reply.joined.status);
          return;
        }
        if (reply.reply === 'join_refused' && reply.refused === 'busy' && attempt < BUSY_TRIES_MAX) {
          await sleep(500 * attempt);
          continue;
        }
        if (reply.reply === 'join_refused') return joinRefused(reply.refused);
        showError('Unexpected answer: ' + reply.reply);
        return;
      }
    } catch (e) {
      failed(e);
    } finally {
      button.disabled = false;
      $('full-retry').disabled = false;
    }
  }

  function joinRefused(refused) {
    switch (refused) {
      case 'full':
        return showFull();
      case 'sold_out':
        return showSoldOut();
      case 'closed':
        return showClosed('sale_closed');
      case 'ticket_limit':
        return showError('You already have the most tickets allowed for this event.');
      case 'busy':
        return showError(messageFor('busy'));
      default:
        return showError(messageFor(refused));
    }
  }

  function showWaiting() {
    renderWaiting();
    if (state.screen !== 'waiting') show('waiting');
  }

  /** In the pre-queue: when places are drawn. */
  function renderPreQueue() {
    const status = state.status;
    const preQueued = !!status && status.status === 'pre_queued';
    $('pre-queue').hidden = !preQueued;
    $('leave').hidden = preQueued; // a place in the draw is kept until the opening
    if (!preQueued) return false;
    const at = status.opens_at;
    const when = at == null ? 'when the sale opens'
      : 'at ' + new Date(at).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    $('pre-queue').textContent = `You are in the pre-queue; positions are drawn ${when}. `
      + 'Arriving earlier gives no edge: everyone here gets a random place ahead of later arrivals.';
    $('position').textContent = '–';
    $('ahead').textContent = '';
    $('eta').textContent = 'until the draw; then it depends on your place';
    $('waiting-sale').textContent = SALE_TEXT[state.sale] || '';
    return true;
  }

  function renderWaiting() {
    if (renderPreQueue()) return;
    const w = state.waiting || {};
    const through = w.admitted_through != null
      ? w.admitted_through
      : (state.detail && state.detail.overview ? state.detail.overview.admitted_through : 0);
    $('position').textContent = w.position != null ? `#${w.position}` : '–';
    $('ahead').textContent = w.ahead == null ? ''
      : w.ahead === 0 ? "You're next!"
        : `${w.ahead} fan${w.ahead === 1 ? '' : 's'} ahead of you`;
    let pct = 0;
    if (w.position != null) {
      const base = Math.min(storage.getFor('baseline', state.event) || 0, w.position - 1);
      pct = through >= w.position ? 100 : Math.max(0, Math.min(100, ((through - base) / (w.position - base)) * 100));
    }
    $('progress-fill').style.width = pct.toFixed(1) + '%';
    $('progress').setAttribute('aria-valuenow', pct.toFixed(0));
    $('progress').dataset.admittedThrough = String(through);
    if (state.sale === 'scheduled') $('eta').textContent = 'when the sale opens';
    else if (state.sale === 'paused') $('eta').textContent = 'the sale is paused';
    else if (w.eta_ms != null) $('eta').textContent = w.eta_ms <= 0 ? 'any moment now' : formatWait(w.eta_ms);
    else $('eta').textContent = 'calculating…';
    $('waiting-sale').textContent = SALE_TEXT[state.sale] || '';
  }

  async function leaveLine() {
    try {
      await command({ cmd: 'leave' });
      storage.setFor('tokens', state.event, null);
      storage.setFor('baseline', state.event, null);
      state.waiting = null;
      state.sticky = false;
      applyStatus(null);
    } catch (e) {
      failed(e);
    }
  }

  // ------------------------------------------------------- seat selection

  function showShop() {
    const status = state.status;
    const key = `${state.event}:${status.position}`;
    if (state.enteredKey !== key) {
      state.enteredKey = key;
      // Tell the event the admitted fan showed up; the answer is the status.
      command({ cmd: 'enter' }).catch((e) => failed(e));
    }
    renderShopCountdown();
    renderVenue($('shop-map'), true);
    if (state.screen !== 'shop') {
      show('shop');
      if (state.section == null && state.detail && state.detail.sections.length === 1) {
        chooseSection(state.detail.sections[0].section);
      } else if (state.section != null) {
        chooseSection(state.section);
      }
    }
  }

  function renderShopCountdown() {
    const status = state.status;
    if (!status || status.status !== 'admitted') return;
    $('shop-countdown').textContent = formatClock(status.shopping_until - serverNow());
  }

  function chooseSection(section) {
    state.section = section;
    state.alternative = null;
    $('alternative').hidden = true;
    if (ws.sock && ws.sock.readyState === WebSocket.OPEN) wsSend({ op: 'view', section });
    for (const g of $('shop-map').querySelectorAll('.section')) {
      g.classList.toggle('chosen', Number(g.dataset.section) === section);
    }
    return loadSection(section);
  }

  /** (Re)load the seats of `section` and draw them, keeping the selection
   *  of seats still available. */
  async function loadSection(section) {
    const event = state.event;
    try {
      const detail = await retryBusy(() => api('GET', `/api/events/${event}/sections/${section}`));
      if (state.event !== event || state.section !== section) return;
      if (!state.sectionDetail || state.sectionDetail.section !== section) state.selected.clear();
      const free = new Set();
      for (const row of detail.rows) for (const seat of row.seats) if (seat.available) free.add(seat.seat);
      for (const seat of [...state.selected]) if (!free.has(seat)) state.selected.delete(seat);
      state.sectionDetail = detail;
      rememberSeats(detail);
      renderSeats();
    } catch (e) {
      failed(e);
    }
  }

  function rememberSeats(detail) {
    for (const row of detail.rows) {
      for (const seat of row.seats) {
        state.seatInfo.set(seat.seat, {
          section: detail.name, row: row.id, seat: seat.id, price: seat.price_cents,
          label: `${detail.name} · Row ${row.id} · Seat ${seat.id}`,
        });
      }
    }
  }

  function renderSeats() {
    const detail = state.sectionDetail;
    const map = $('seatmap');
    const cell = 30;
    const labelW = 36;
    const widest = Math.max(1, ...detail.rows.map((r) => r.seats.length));
    const width = labelW + widest * cell + 6;
    const height = detail.rows.length * cell + 6;
    map.replaceChildren();
    map.setAttribute('viewBox', `0 0 ${width} ${height}`);
    // Big enough to tap on a phone; the wrapper scrolls sideways if needed.
    map.style.minWidth = `${Math.min(width, labelW + widest * 24)}px`;
    map.style.maxWidth = `${width * 1.4}px`;
    detail.rows.forEach((row, r) => {
      const y = 3 + r * cell + cell / 2;
      const label = svg('text', { class: 'row-label', x: 4, y: y + 4 }, map);
      label.textContent = row.id;
      // Centre short rows under long ones.
      const offset = ((widest - row.seats.length) * cell) / 2;
      row.seats.forEach((seat, i) => {
        const circle = svg('circle', {
          cx: labelW + offset + i * cell + cell / 2, cy: y, r: cell * 0.36,
          'data-seat': String(seat.seat), id: `seat-${seat.seat}`, role: 'button', tabindex: '0',
        }, map);
        svg('title', {}, circle).textContent =
          `Row ${row.id}, seat ${seat.id}: ${money(seat.price_cents)}${seat.accessible ? ' (accessible)' : ''}`;
        paintSeat(circle, seat);
      });
    });
    $('section-name').textContent = detail.name;
    $('section-card').hidden = false;
    $('shop-hint').hidden = true;
    renderSelection();
  }

  function paintSeat(circle, seat) {
    const selected = state.selected.has(seat.seat);
    circle.setAttribute('class', [
      selected ? 'selected' : seat.available ? 'available' : 'taken',
      seat.accessible ? 'accessible' : '',
    ].join(' ').trim());
    circle.setAttribute('aria-pressed', selected ? 'true' : 'false');
    circle.setAttribute('aria-disabled', seat.available ? 'false' : 'true');
  }

  function findSeat(index) {
    if (!state.sectionDetail) return null;
    for (const row of state.sectionDetail.rows) {
      for (const seat of row.seats) if (seat.seat === index) return seat;
    }
    return null;
  }

  function toggleSeat(index) {
    const seat = findSeat(index);
    if (!seat) return;
    if (state.selected.has(index)) state.selected.delete(index);
    else if (seat.available) state.selected.add(index);
    else return;
    const circle = $(`seat-${index}`);
    if (circle) paintSeat(circle, seat);
    renderSelection();
  }

  function renderSelection() {
    const seats = [...state.selected];
    const total = seats.reduce((sum, s) => sum + (state.seatInfo.get(s) || { price: 0 }).price, 0);
    $('selection').textContent = seats.length === 0
      ? 'No seats selected.'
      : `${seats.length} seat${seats.length === 1 ? '' : 's'} selected: ${seats
        .map((s) => { const i = state.seatInfo.get(s); return i ? `${i.row}${i.seat}` : `#${s}`; })
        .join(', ')} · ${money(total)}`;
    $('hold-submit').disabled = seats.length === 0 || state.busy;
  }

  /** Apply a `seats_changed` push to the seats on screen. */
  function seatsChanged(push) {
    const detail = state.sectionDetail;
    let changed = 0;
    let lostSelection = false;
    if (detail && detail.section === push.section) {
      for (const index of push.seats) {
        const seat = findSeat(index);
        if (!seat || seat.available === push.available) continue;
        seat.available = push.available;
        changed++;
        // While this fan's own hold is in flight its seats go too: no alarm.
        if (!push.available && state.selected.delete(index) && !state.busy) lostSelection = true;
        const circle = $(`seat-${index}`);
        if (circle) paintSeat(circle, seat);
      }
    }
    const summary = state.detail && state.detail.sections.find((s) => s.section === push.section);
    if (summary && changed > 0) {
      summary.available = Math.max(0, summary.available + (push.available ? changed : -changed));
      renderVenue($('shop-map'), true);
      renderVenue($('venue-map'), false);
    }
    if (lostSelection) {
      notice('Some seats you picked were just taken by someone else.');
      renderSelection();
    }
  }

  async function hold(request) {
    clearError();
    notice('');
    state.busy = true;
    $('hold-submit').disabled = true;
    $('best-submit').disabled = true;
    $('alternative').hidden = true;
    try {
      const reply = await command({ cmd: 'hold', request });
      if (reply.reply === 'hold_placed') return holdPlaced(reply.placed);
      if (reply.reply === 'hold_rejected') return holdRejected(reply.rejected);
      showError('Unexpected answer: ' + reply.reply);
    } catch (e) {
      failed(e);
    } finally {
      state.busy = false;
      $('best-submit').disabled = false;
      renderSelection();
    }
  }

  function holdPlaced(placed) {
    const labels = {};
    for (const seat of placed.seats) {
      const info = state.seatInfo.get(seat);
      labels[seat] = info ? { label: info.label, price: info.price } : { label: `Seat #${seat}`, price: null };
    }
    state.epoch++;
    state.hold = Object.assign({}, placed, { labels });
    storage.setFor('holds', state.event, state.hold);
    state.selected.clear();
    state.paying = false;
    state.warned = false;
    applyStatus({ status: 'holding', hold: placed.hold, deadline: placed.deadline, paying: false });
  }

  function holdRejected(rejected) {
    const reason = rejected.reason;
    switch (reason) {
      case 'seats_unavailable': {
        for (const index of rejected.taken || []) {
          const seat = findSeat(index);
          if (seat) seat.available = false;
          state.selected.delete(index);
        }
        if (state.sectionDetail) renderSeats();
        const alternative = rejected.alternative;
        if (alternative && alternative.length) {
          state.alternative = alternative;
          $('alternative-text').textContent = `${messageFor(reason)} These are free nearby: ${alternative
            .map((s) => (state.seatInfo.get(s) || { label: `#${s}` }).label).join(', ')}.`;
          $('alternative').hidden = false;
        } else {
          showError(messageFor(reason));
        }
        return;
      }
      case 'ticket_limit':
        return showError(`${messageFor(reason)} You may hold at most ${rejected.max} more.`);
      case 'fair_share':
        return showError(`${messageFor(reason)} You may hold at most ${rejected.max} now.`);
      case 'unknown_area':
        return showError(messageFor('unknown_section'));
      case 'sold_out':
        return showSoldOut();
      case 'admission_expired':
        return showLapsed();
      case 'sale_not_open':
        return showClosed('sale_not_open');
      case 'already_holding':
      case 'not_admitted':
      case 'not_in_line':
        showError(messageFor(reason));
        return refreshStatus();
      default:
        return showError(messageFor(reason));
    }
  }

  // ------------------------------------------------------------- checkout

  function showCheckout(previous) {
    const status = state.status;
    if (!state.hold || state.hold.hold !== status.hold) {
      const stored = storage.getFor('holds', state.event);
      state.hold = stored && stored.hold === status.hold
        ? stored
        : { hold: status.hold, seats: [], deadline: status.deadline, total_cents: null, labels: {} };
    }
    state.hold.deadline = status.deadline;
    const wasPaying = state.paying;
    state.paying = !!status.paying;
    if (wasPaying && !status.paying && previous && previous.status === 'holding') {
      // The provider answered and it was not a sale: declined.
      return showFailed(null, true);
    }
    renderCheckout();
    if (state.screen !== 'checkout') show('checkout');
  }

  function renderCheckout() {
    const h = state.hold;
    const seats = h.seats || [];
    $('held-seats').replaceChildren(...seats.map((seat) => {
      const info = (h.labels && h.labels[seat]) || { label: `Seat #${seat}`, price: null };
      return el('li', { 'data-seat': String(seat) },
        el('span', { text: info.label }),
        el('span', { text: info.price == null ? '' : money(info.price) }));
    }));
    if (seats.length === 0) $('held-seats').append(el('li', { text: `Hold #${h.hold}` }));
    $('total').textContent = h.total_cents == null ? '' : money(h.total_cents);
    $('pay').disabled = state.paying;
    $('release').disabled = state.paying;
    $('pay-status').textContent = state.paying ? 'Processing your payment…' : '';
    renderCountdown();
  }

  function renderCountdown() {
    if (!state.hold) return;
    const left = state.hold.deadline - serverNow();
    $('countdown').textContent = formatClock(left);
    $('countdown').dataset.deadline = String(state.hold.deadline);
    if (left <= HOLD_WARNING_MS && left > 0 && !state.paying) {
      $('hold-warning').hidden = false;
      $('hold-warning').textContent = `Hurry: your seats are released in ${formatClock(left)}.`;
    } else if (!state.warned || state.paying) {
      $('hold-warning').hidden = true;
    }
    if (left <= 0 && !state.paying) {
      $('hold-warning').hidden = false;
      $('hold-warning').textContent = 'Time is up: checking your hold…';
    }
  }

  async function pay() {
    clearError();
    const h = state.hold;
    if (!h) return;
    $('pay').disabled = true;
    $('release').disabled = true;
    $('pay-status').textContent = 'Sending your payment…';
    try {
      const reply = await command({ cmd: 'submit_payment', hold: h.hold });
      if (reply.reply === 'payment_started') {
        state.epoch++;
        state.paying = true;
        $('pay-status').dataset.payment = String(reply.started.payment);
        $('pay-status').textContent = 'Processing your payment…';
        $('hold-warning').hidden = true;
        return;
      }
      if (reply.reply === 'payment_refused') {
        switch (reply.refused) {
          case 'pending':
            state.paying = true;
            $('pay-status').textContent = 'Processing your payment…';
            return;
          case 'late':
            return showExpired(messageFor('payment_late'));
          default: // hold_not_found (409 now, below): expired, or sold
            state.paying = false;
            return refreshAfterLostHold(messageFor('hold_not_found'));
        }
      }
      showError('Unexpected answer: ' + reply.reply);
    } catch (e) {
      $('pay-status').textContent = '';
      if (e instanceof ApiError && e.code === 'hold_not_found') {
        // 409: it expired, or it was already sold.
        state.paying = false;
        return refreshAfterLostHold(messageFor('hold_not_found'));
      }
      failed(e);
    } finally {
      if (state.screen === 'checkout') {
        $('pay').disabled = state.paying;
        $('release').disabled = state.paying;
      }
    }
  }

  async function releaseHold() {
    const h = state.hold;
    if (!h) return;
    try {
      await command({ cmd: 'release', hold: h.hold });
    } catch (e) {
      // 409 hold_not_found: gone already (expired, or sold): forget it too.
      if (!(e instanceof ApiError && e.code === 'hold_not_found')) return failed(e);
    }
    try {
      storage.setFor('holds', state.event, null);
      state.hold = null;
      await refreshStatus();
    } catch (e) {
      failed(e);
    }
  }

  /** The hold is gone without a sale we know of: bought, or expired. */
  async function refreshAfterLostHold(message) {
    try {
      const reply = await command({ cmd: 'status' });
      if (reply.status && reply.status.status === 'purchased') return applyStatus(reply.status);
      state.status = reply.status || null;
      showExpired(message);
    } catch (e) {
      failed(e);
    }
  }

  /** Called every second on the checkout screen. */
  async function checkoutTick() {
    renderCountdown();
    const h = state.hold;
    if (!h) return;
    const due = state.paying || h.deadline - serverNow() <= 0;
    if (!due || Date.now() - state.lastStatusPoll < 1_000) return;
    state.lastStatusPoll = Date.now();
    const event = state.event;
    const epoch = state.epoch;
    let reply;
    try {
      reply = await command({ cmd: 'status' });
    } catch (e) {
      if (e.code !== 'network' && e.status !== 429 && e.status !== 503) failed(e);
      return;
    }
    if (state.event !== event || state.screen !== 'checkout' || state.epoch !== epoch) return;
    const status = reply.status;
    const kind = status ? status.status : null;
    if (kind === 'purchased') return applyStatus(status);
    if (kind === 'holding' && status.hold === h.hold) {
      if (state.paying && !status.paying) {
        state.status = status;
        return showFailed(null, true);
      }
      return applyStatus(status);
    }
    // No hold any more: it expired (or its payment was voided).
    state.status = status;
    if (state.paying) return showFailed('The payment was not completed and your seats were released.', false);
    showExpired();
  }

  // ------------------------------------------------------------- outcomes

  function showConfirmation(order) {
    const event = state.event;
    const stored = storage.getFor('orders', event);
    const h = state.hold || storage.getFor('holds', event);
    let seats = order && order.seats;
    if (!seats && stored) seats = stored.seats;
    if (!seats && h) seats = h.seats;
    seats = seats || [];
    const labels = Object.assign({}, (stored && stored.labels) || {}, (h && h.labels) || {});
    for (const seat of seats) {
      if (!labels[seat] && state.seatInfo.has(seat)) {
        const info = state.seatInfo.get(seat);
        labels[seat] = { label: info.label, price: info.price };
      }
    }
    const orderId = (order && order.order) || (stored && stored.order) || null;
    storage.setFor('orders', event, { order: orderId, seats, labels });
    storage.setFor('holds', event, null);
    state.hold = null;
    state.paying = false;
    $('confirmation-order').textContent = orderId != null ? `Order #${orderId}` : 'Your order is confirmed.';
    renderConfirmationSeats(seats, labels);
    if (state.detail) renderEventHead();
    show('confirmation', true);
    const unknown = seats.filter((seat) => !labels[seat]);
    if (unknown.length > 0) labelSeats(event, orderId, seats, unknown);
  }

  function renderConfirmationSeats(seats, labels) {
    const items = seats.map((seat) => {
      const info = labels[seat] || { label: `Seat #${seat}`, price: null };
      return el('li', { 'data-seat': String(seat) },
        el('span', { text: info.label }),
        el('span', { text: info.price == null ? '' : money(info.price) }));
    });
    if (items.length === 0 && state.status && state.status.tickets) {
      items.push(el('li', { text: `${state.status.tickets} ticket${state.status.tickets === 1 ? '' : 's'}` }));
    }
    $('confirmation-seats').replaceChildren(...items);
  }

  /** Seats bought on another device: read their sections for the labels. */
  async function labelSeats(event, orderId, seats, unknown) {
    try {
      if (!state.detail) await loadDetail();
      if (state.event !== event || !state.detail) return;
      const sections = new Set();
      for (const seat of unknown) {
        const info = state.detail.sections.find((s) => seat >= s.first_seat && seat < s.first_seat + s.seats);
        if (info) sections.add(info.section);
      }
      for (const section of sections) {
        rememberSeats(await retryBusy(() => api('GET', `/api/events/${event}/sections/${section}`)));
      }
      if (state.event !== event || state.screen !== 'confirmation') return;
      const labels = {};
      for (const seat of seats) {
        const info = state.seatInfo.get(seat);
        if (info) labels[seat] = { label: info.label, price: info.price };
      }
      storage.setFor('orders', event, { order: orderId, seats, labels });
      renderConfirmationSeats(seats, labels);
    } catch (e) {
      // The seat numbers stay: the order is what matters.
    }
  }

  function showFull(message) {
    $('full-message').textContent = message || messageFor('waiting_room_full');
    show('full', true);
  }

  function showSoldOut(message) {
    $('soldout-message').textContent = message || messageFor('sold_out');
    show('soldout', true);
  }

  function showClosed(code, message) {
    $('closed-title').textContent = code === 'sale_not_open' ? 'Sale not open' : 'Sale closed';
    $('closed-message').textContent = message || messageFor(code);
    show('closed', true);
  }

  function showExpired(message) {
    storage.setFor('holds', state.event, null);
    state.hold = null;
    state.paying = false;
    $('expired-message').textContent = message || messageFor('hold_expired');
    show('expired', true);
    refreshOutcomeActions();
  }

  function showLapsed(message) {
    storage.setFor('tokens', state.event, null);
    $('lapsed-message').textContent = message || messageFor('admission_expired');
    show('lapsed', true);
  }

  function showFailed(message, canRetry) {
    $('failed-message').textContent = message || 'Your payment was declined. Your seats are still held: you can try again.';
    state.paying = false;
    show('failed', true);
    $('failed-retry').hidden = !canRetry;
    refreshOutcomeActions();
  }

  /** Buttons on an outcome screen that depend on the latest status. */
  function refreshOutcomeActions() {
    const kind = state.status ? state.status.status : null;
    $('expired-back').hidden = kind !== 'admitted';
    if (state.screen === 'failed') {
      const holding = kind === 'holding' && state.hold && state.status.hold === state.hold.hold
        && state.status.deadline > serverNow();
      $('failed-retry').hidden = !holding;
      $('failed-deadline').textContent = holding
        ? `Your seats are held until ${new Date(state.status.deadline - state.clockOffsetMs).toLocaleTimeString()}.`
        : '';
    }
  }

  // ------------------------------------------------------------ websocket

  const ws = { sock: null, live: false, attempt: 0, timer: null };

  function setConn(mode) {
    const conn = $('conn');
    conn.dataset.state = mode;
    conn.textContent = mode === 'live' ? 'live' : mode === 'retry' ? 'reconnecting…' : 'offline';
  }

  function wsSend(message) {
    if (ws.sock && ws.sock.readyState === WebSocket.OPEN) ws.sock.send(JSON.stringify(message));
  }

  /** Follow the open event on the websocket (connecting first if needed). */
  function wsWatch() {
    if (!state.session || state.event == null) return;
    if (!ws.sock) {
      wsConnect();
      return; // onopen sends the watch
    }
    if (ws.sock.readyState === WebSocket.OPEN) sendWatch();
  }

  function sendWatch() {
    if (state.event == null) return;
    const token = storage.getFor('tokens', state.event);
    wsSend(token ? { op: 'watch', event: state.event, token } : { op: 'watch', event: state.event });
    if (state.section != null && state.screen === 'shop') wsSend({ op: 'view', section: state.section });
  }

  function wsConnect() {
    clearTimeout(ws.timer);
    ws.timer = null;
    if (!state.session) return;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const url = `${scheme}${location.host}/ws?session=${encodeURIComponent(state.session.session)}`;
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (_) {
      wsRetry();
      return;
    }
    ws.sock = sock;
    setConn('retry');
    sock.onopen = () => {
      if (ws.sock === sock) sendWatch();
    };
    sock.onmessage = (message) => {
      if (ws.sock !== sock) return;
      let push;
      try {
        push = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      onPush(push);
    };
    sock.onclose = () => {
      if (ws.sock !== sock) return;
      ws.sock = null;
      ws.live = false;
      wsRetry();
    };
  }

  function wsRetry() {
    if (!state.session) return;
    setConn('retry');
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** ws.attempt) * (0.75 + Math.random() * 0.5);
    ws.attempt = Math.min(ws.attempt + 1, 10);
    ws.timer = setTimeout(wsConnect, delay);
  }

  function wsClose() {
    clearTimeout(ws.timer);
    ws.timer = null;
    const sock = ws.sock;
    ws.sock = null;
    ws.live = false;
    if (sock) sock.close(1000);
    setConn('off');
  }

  function onPush(push) {
    if (push.push === 'error') {
      if (push.code === 'invalid_token' || push.code === 'token_expired') {
        storage.setFor('tokens', state.event, null);
      }
      if (push.code === 'unauthorized') return signedOut(push.message);
      showError(push.message || messageFor(push.code));
      return;
    }
    if (push.event !== undefined && push.event !== state.event) return;
    switch (push.push) {
      case 'watching':
        ws.live = true;
        ws.attempt = 0;
        setConn('live');
        if (push.sale) state.sale = push.sale;
        if (state.screen === 'loading') return; // the HTTP answer decides first
        // A payment in flight: read the status afresh rather than trust a
        // snapshot that may predate it.
        if (state.paying) return refreshStatus({ background: true });
        return applyStatus(push.status || null);
      case 'position':
        if (state.status && state.status.status === 'pre_queued') {
          // The draw gave this fan its place.
          state.status = { status: 'waiting', position: push.position, ahead: push.ahead };
          if (storage.getFor('baseline', state.event) == null) {
            storage.setFor('baseline', state.event, Math.min(push.admitted_through, push.position - 1));
          }
        }
        state.waiting = {
          position: push.position, ahead: push.ahead, admitted_through: push.admitted_through, eta_ms: push.eta_ms,
        };
        if (state.screen === 'waiting') renderWaiting();
        return;
      case 'admitted':
        return refreshStatus();
      case 'full':
        if (state.detail && state.detail.overview) state.detail.overview.full = push.full;
        if (state.detail) state.detail.listing.full = push.full;
        if (state.screen === 'event') renderEventHead();
        return;
      case 'sold_out':
        return saleChanged('sold_out');
      case 'sale':
        return saleChanged(push.state);
      case 'seats_changed':
        return seatsChanged(push);
      case 'hold_expiring':
        if (state.hold && state.hold.hold === push.hold) {
          state.warned = true;
          state.hold.deadline = push.deadline;
          $('hold-warning').hidden = false;
          $('hold-warning').textContent = `Hurry: your seats are released in ${formatClock(push.deadline - serverNow())}.`;
        }
        return;
      case 'payment_declined':
        // Only about the hold this page is paying for.
        if (state.screen === 'confirmation' || !state.hold || state.hold.hold !== push.hold) return;
        if (state.status && state.status.status === 'holding') state.status.paying = false;
        if (push.retry_until != null) {
          state.hold.deadline = push.retry_until;
          return showFailed(null, true);
        }
        // The checkout time is over: the seats are gone ("hold_expired"
        // follows and need not say it again).
        state.declined = push.hold;
        showExpired(push.reason === 'no_answer'
          ? 'The payment provider never confirmed your payment, so it was cancelled and the seats were released. If you were charged, the money will be refunded.'
          : 'Your payment was declined and the checkout time is over: the seats were released.');
        refreshStatus({ background: true }); // for "pick seats again"
        return;
      case 'hold_expired':
        if (state.screen === 'confirmation') return;
        if (state.hold && state.hold.hold !== push.hold) return;
        if (state.declined === push.hold) return; // "declined" says it already
        state.status = null;
        showExpired();
        refreshStatus(); // for "pick seats again"
        return;
      case 'admission_expired':
        if (state.screen === 'confirmation' || state.screen === 'checkout') return;
        return showLapsed();
      case 'purchased':
        state.status = { status: 'purchased', tickets: (push.seats || []).length, order: push.order, seats: push.seats };
        return showConfirmation({ order: push.order, seats: push.seats });
      default:
        return; // a push this page does not know yet
    }
  }

  function saleChanged(sale) {
    state.sale = sale;
    if (state.detail) {
      if (state.detail.overview) state.detail.overview.sale = sale;
      state.detail.listing.sale = sale;
    }
    const kind = state.status ? state.status.status : null;
    const shopping = kind === 'holding' || kind === 'purchased';
    if (sale === 'sold_out' && !shopping && state.screen !== 'confirmation') return showSoldOut();
    if (sale === 'closed' && !shopping && state.screen !== 'confirmation') return showClosed('sale_closed');
    if (sale === 'paused') notice('The sale is paused for a moment. You keep your place.');
    else notice('');
    if (state.screen === 'waiting') renderWaiting();
    if (state.screen === 'event') showEventPage();
  }

  // -------------------------------------------------------------- ticking

  let tick = 0;

  /** Once a second: countdowns, and polling while the websocket is down. */
  async function onTick() {
    tick++;
    if (state.event == null || !state.session) return;
    switch (state.screen) {
      case 'checkout':
        return checkoutTick();
      case 'shop':
        renderShopCountdown();
        if (state.status && state.status.shopping_until - serverNow() <= 0 && tick % 2 === 0) {
          return refreshStatus({ background: true });
        }
        if (!ws.live && tick % 3 === 0) return refreshStatus({ background: true });
        // Without the websocket, seat changes arrive by reloading the section.
        if (!ws.live && tick % 5 === 1 && state.section != null) return loadSection(state.section);
        if (tick % 10 === 0) return loadDetail().catch(() => {});
        return;
      case 'waiting':
        if (!ws.live && tick % 2 === 0) {
          await refreshStatus({ background: true });
          if (state.screen === 'waiting') {
            const detail = await api('GET', `/api/events/${state.event}`).catch(() => null);
            if (detail && detail.overview && state.waiting) {
              state.waiting.admitted_through = detail.overview.admitted_through;
              state.sale = detail.overview.sale;
              renderWaiting();
            }
          }
        }
        return;
      case 'event':
        if (tick % 10 === 0) loadDetail().catch(() => {});
        return;
      case 'failed':
        if (tick % 2 === 0) {
          const reply = await command({ cmd: 'status' }).catch(() => null);
          if (reply) {
            state.status = reply.status || null;
            if (state.status && state.status.status === 'purchased') return applyStatus(state.status);
            refreshOutcomeActions();
          }
        }
        return;
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const name = $('login-name').value.trim();
      if (name) login(name);
    });
    $('logout').addEventListener('click', () => {
      signedOut(null);
      location.hash = '#/events';
    });
    $('error-close').addEventListener('click', clearError);
    $('search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      clearError();
      searchEvents();
    });
    $('join').addEventListener('click', join);
    $('full-retry').addEventListener('click', () => {
      state.sticky = false;
      join();
    });
    $('leave').addEventListener('click', leaveLine);

    const onSection = async (e) => {
      const g = e.target.closest('[data-section]');
      if (!g) return;
      await chooseSection(Number(g.dataset.section));
      // On a phone the seats are below the map: bring them up.
      const card = $('section-card');
      if (!card.hidden && card.getBoundingClientRect().top > window.innerHeight * 0.6) {
        card.scrollIntoView({ block: 'start' });
      }
    };
    $('shop-map').addEventListener('click', onSection);
    $('shop-map').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        onSection(e);
      }
    });
    const onSeat = (e) => {
      const circle = e.target.closest('[data-seat]');
      if (circle) toggleSeat(Number(circle.dataset.seat));
    };
    $('seatmap').addEventListener('click', onSeat);
    $('seatmap').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        onSeat(e);
      }
    });
    $('clear-selection').addEventListener('click', () => {
      state.selected.clear();
      if (state.sectionDetail) renderSeats();
    });
    $('hold-submit').addEventListener('click', () => {
      if (state.selected.size > 0) hold({ kind: 'seats', seats: [...state.selected].sort((a, b) => a - b) });
    });
    $('best-form').addEventListener('submit', (e) => {
      e.preventDefault();
      if (state.section == null) return;
      hold({ kind: 'best', count: Number($('best-count').value), area: { in: 'section', section: state.section } });
    });
    $('alternative-take').addEventListener('click', () => {
      if (state.alternative) hold({ kind: 'seats', seats: state.alternative });
    });
    $('pay').addEventListener('click', pay);
    $('release').addEventListener('click', releaseHold);
    $('failed-retry').addEventListener('click', () => {
      state.sticky = false;
      if (state.status && state.status.status === 'holding') {
        applyStatus(state.status);
        pay();
      } else {
        refreshStatus();
      }
    });
    $('expired-back').addEventListener('click', () => {
      state.sticky = false;
      refreshStatus();
    });
    window.addEventListener('hashchange', route);
    // A tab coming back from the background: catch up at once.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.event != null && !state.sticky) refreshStatus();
    });
    setInterval(() => { onTick().catch(() => {}); }, 1_000);
  }

  wire();
  loadSession();
  route();
})();
