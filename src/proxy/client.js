// devserve's browser client, served at /__devserve/client.js and added by devserve's proxy to the
// HTML pages of the app. No dependency. It reloads the page once a new generation of the app is
// ready (and routed to), shows a failed build or a crashed start in an overlay, and a badge while
// a build runs. The protocol is described in src/proxy/browser.rs.
//
// One event stream per browser: a SharedWorker (/__devserve/worker.js) holds the stream and
// relays it to every tab of the origin. Where SharedWorker is missing or fails, each tab opens
// its own EventSource. Both reconnect by themselves (devserve restarted, the laptop woke up),
// through `__devserveStream` (stream.js, appended to this script when it is served).
//
// Safety: everything from the stream is put into the page as text (textContent), never as HTML;
// the script does nothing in a frame whose ancestors are of another origin.
(function () {
  'use strict';
  const script = document.currentScript;
  if (!script || window.__devserve || location.origin === 'null') return;
  // A frame: only under same-origin ancestors, and only when the top page has no client of its
  // own (its reload reloads the frame too).
  try {
    for (let w = window; w !== w.top; w = w.parent) {
      if (w.parent.location.origin !== location.origin) return;
    }
    if (window.top !== window && window.top.__devserve) return;
  } catch (e) {
    return; // an ancestor of another origin
  }

  const KINDS = ['hello', 'building', 'ready', 'build-failed', 'crashed'];
  const RELOAD_KEY = '__devserve.reload';
  const CAUGHT_UP_KEY = '__devserve.caught-up';
  const page = {
    instance: script.dataset.devserveInstance || '',
    generation: Number(script.dataset.devserveGeneration || 0),
    method: script.dataset.devserveMethod || '',
  };
  // Also read by devserve's browser tests.
  const state = {
    page: page,
    transport: null,
    connected: false,
    hello: null,
    events: [],
    failedSinceLoad: false,
    dismissed: null,
  };
  window.__devserve = state;

  function remember(key, value) {
    try { sessionStorage.setItem(key, value); } catch (e) { /* storage disabled */ }
  }
  function recall(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }

  function reload(reason, generation) {
    const instance = state.hello ? state.hello.instance : page.instance;
    remember(RELOAD_KEY, JSON.stringify({ reason: reason, generation: generation, instance: instance, at: Date.now() }));
    // A page that answered a POST is fetched again with GET, not re-submitted.
    if (page.method) location.replace(location.href); else location.reload();
  }

  function receive(kind, data) {
    state.events.push(kind === 'ready' || kind === 'crashed' ? kind + ' ' + data.generation : kind);
    if (kind === 'hello') onHello(data);
    else if (kind === 'building') showBadge(data.cause);
    else if (kind === 'ready') onReady(data);
    else if (kind === 'build-failed' || kind === 'crashed') {
      hideBadge();
      state.failedSinceLoad = true;
      showOverlay(kind, data);
    }
  }

  // The stream (re)opened: a page from an older generation, or from another devserve run, missed
  // its `ready`. Reload once for it (never twice for the same one: no loop if the app keeps
  // answering with an old page).
  function onHello(hello) {
    state.hello = hello;
    state.connected = true;
    if (hello.ready == null) return;
    if (hello.instance === page.instance && hello.ready <= page.generation) return;
    const key = hello.instance + ':' + hello.ready;
    if (recall(CAUGHT_UP_KEY) === key) return;
    remember(CAUGHT_UP_KEY, key);
    reload('caught-up', hello.ready);
  }

  function onReady(ready) {
    hideBadge();
    hideOverlay();
    state.dismissed = null;
    // A service whose swaps do not reload pages (browser-reload = false): its overlay went.
    if (ready.reload === false) return;
    const sameRun = state.hello !== null && state.hello.instance === page.instance;
    if (sameRun && ready.generation <= page.generation) return; // this page is that generation
    const cssOnly = ready.css_only && ready.css_only.length > 0;
    if (cssOnly && sameRun && !state.failedSinceLoad && swapStyles(ready.generation)) {
      page.generation = ready.generation;
      return;
    }
    reload('ready', ready.generation);
  }

  // Re-fetches every same-origin stylesheet with a cache-busting query; the old <link> goes once
  // the new one loaded (no flash of unstyled content). False if there is none to swap.
  function swapStyles(generation) {
    const links = Array.from(document.querySelectorAll('link[rel~="stylesheet" i][href]'))
      .filter((link) => new URL(link.href, location.href).origin === location.origin);
    if (links.length === 0) return false;
    for (const link of links) {
      const url = new URL(link.href, location.href);
      url.searchParams.set('__devserve', String(generation));
      const fresh = link.cloneNode(false);
      fresh.href = url.href;
      const done = () => link.remove();
      fresh.addEventListener('load', done);
      fresh.addEventListener('error', done);
      link.after(fresh);
    }
    state.events.push('css ' + generation);
    return true;
  }

  // ---- The overlay and the badge: in a shadow root, styled through the CSSOM (allowed by a
  // strict Content-Security-Policy), filled with text only.

  const CSS = `
    :host { all: initial; }
    .backdrop { position: fixed; inset: 0; z-index: 2147483647; background: rgba(0, 0, 0, 0.66);
      overflow: auto; font: 14px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
    .panel { box-sizing: border-box; max-width: 1000px; margin: 4vh auto; padding: 16px 20px;
      background: #1e1e1e; color: #ddd; border-top: 4px solid #f14c4c; border-radius: 4px;
      box-shadow: 0 8px 40px rgba(0, 0, 0, 0.5); }
    header { display: flex; align-items: baseline; gap: 12px; }
    h1 { flex: 1; margin: 0; font-size: 17px; color: #f14c4c; }
    button { font: inherit; background: none; color: #aaa; border: 1px solid #555; border-radius: 3px;
      cursor: pointer; padding: 0 8px; }
    button:hover { color: #fff; border-color: #aaa; }
    .meta { margin: 8px 0 12px; color: #aaa; }
    .meta code { color: #ddd; }
    pre { margin: 0; padding: 10px 12px; background: #111; white-space: pre-wrap; word-break: break-word;
      overflow: auto; max-height: 60vh; }
    .diagnostic { margin: 0 0 14px; }
    .diagnostic .head { margin-bottom: 4px; }
    .level { font-weight: bold; color: #f14c4c; }
    .level.warning { color: #e5e510; }
    .loc { color: #4fc1ff; text-decoration: underline; background: rgba(79, 193, 255, 0.12); }
    details { margin-top: 10px; }
    summary { cursor: pointer; color: #aaa; }
    footer { margin-top: 12px; color: #888; font-size: 12px; }
    .badge { position: fixed; right: 12px; bottom: 12px; z-index: 2147483647; padding: 4px 10px;
      border-radius: 12px; background: #1e1e1e; color: #ddd; font: 12px/1.5 system-ui, sans-serif;
      box-shadow: 0 2px 10px rgba(0, 0, 0, 0.4); opacity: 0.9; pointer-events: none; }
  `;
  let sheet = null;

  function host(name) {
    const element = document.createElement(name);
    const root = element.attachShadow({ mode: 'open' });
    try {
      if (!sheet) {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
      }
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      const style = document.createElement('style');
      style.textContent = CSS;
      root.append(style);
    }
    (document.body || document.documentElement).append(element);
    return { element: element, root: root };
  }

  function el(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  // Build output as devserve sent it: runs of text with the CSS of their ANSI colours.
  function runs(list) {
    const pre = el('pre');
    for (const run of list || []) {
      const span = el('span', run.loc ? 'loc' : '', run.text);
      if (run.style) span.style.cssText = run.style;
      pre.append(span);
    }
    return pre;
  }

  function duration(ms) {
    return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
  }

  let overlay = null;
  let badge = null;

  function showOverlay(kind, data) {
    const key = kind + JSON.stringify(data);
    if (state.dismissed === key) return;
    hideOverlay();
    overlay = host('devserve-overlay');
    overlay.element.dataset.kind = kind;
    overlay.key = key;
    const panel = el('div', 'panel');
    panel.setAttribute('role', 'alertdialog');
    const header = el('header');
    const close = el('button', 'close', '×');
    close.title = 'Dismiss (Esc)';
    close.addEventListener('click', dismiss);
    const meta = el('p', 'meta');
    if (kind === 'build-failed') {
      header.append(el('h1', '', 'devserve: the build failed'), close);
      meta.append(el('code', '', data.command), ' ' + data.status + ' after ' + duration(data.duration_ms));
      panel.append(header, meta);
      const diagnostics = data.diagnostics || [];
      for (const d of diagnostics) {
        const box = el('div', 'diagnostic');
        const head = el('div', 'head');
        head.append(el('span', 'level ' + d.level, d.level), ': ' + d.message);
        box.append(head);
        // Only a place in a file is a location: never `:0:0` (devserve lists no diagnostic
        // without one, and a column of 0 is left out).
        if (d.file && d.line > 0) {
          box.append(el('div', 'loc', d.file + ':' + d.line + (d.column > 0 ? ':' + d.column : '')));
        }
        if (d.rendered && d.rendered.length) box.append(runs(d.rendered));
        panel.append(box);
      }
      if (diagnostics.length) {
        const details = el('details');
        details.append(el('summary', '', 'Full output'), runs(data.output));
        panel.append(details);
      } else {
        panel.append(runs(data.output));
      }
      panel.append(el('footer', '', 'This page is still the last good version. It reloads by itself once a build succeeds.'));
    } else {
      header.append(el('h1', '', 'devserve: generation ' + data.generation + ' failed to start'), close);
      meta.textContent = data.status;
      panel.append(header, meta);
      panel.append(el('footer', '', 'The previous generation keeps serving this page. It reloads by itself once a new generation is ready.'));
    }
    const backdrop = el('div', 'backdrop');
    backdrop.addEventListener('click', (event) => { if (event.target === backdrop) dismiss(); });
    backdrop.append(panel);
    overlay.root.append(backdrop);
  }

  function hideOverlay() {
    if (overlay) overlay.element.remove();
    overlay = null;
  }

  // Hidden until another failure comes (the same one sent again stays hidden).
  function dismiss() {
    if (overlay) state.dismissed = overlay.key;
    hideOverlay();
  }

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && overlay) dismiss();
  });

  function showBadge(cause) {
    hideBadge();
    badge = host('devserve-badge');
    badge.root.append(el('div', 'badge', 'devserve: building' + (cause ? ' (' + cause + ')' : '') + '…'));
  }

  function hideBadge() {
    if (badge) badge.element.remove();
    badge = null;
  }

  // ---- Transport.

  function direct() {
    state.transport = 'event-source';
    __devserveStream(location.origin + '/__devserve/events', KINDS, receive, () => { state.connected = false; });
  }

  function shared() {
    const worker = new SharedWorker(location.origin + '/__devserve/worker.js', { name: 'devserve' });
    let failed = false;
    worker.onerror = () => {
      if (failed) return;
      failed = true;
      worker.port.close();
      direct();
    };
    worker.port.onmessage = (message) => {
      const data = message.data || {};
      if (data.kind === 'down') state.connected = false;
      else if (KINDS.includes(data.kind)) receive(data.kind, data.data);
    };
    worker.port.start();
    addEventListener('pagehide', () => worker.port.postMessage('bye'));
    addEventListener('pageshow', (event) => { if (event.persisted) worker.port.postMessage('hi'); });
    state.transport = 'shared-worker';
  }

  if (typeof SharedWorker === 'function') {
    try {
      shared();
    } catch (e) {
      direct();
    }
  } else {
    direct();
  }
})();
