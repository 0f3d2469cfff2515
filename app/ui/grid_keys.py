"""The review grid's keys and mouse, injected with the page's head: arrows move a focus ring, Space toggles a tile,
a number key labels the focused tile with that label (Shift + number: every selected tile), Enter accepts the page
(every tile still selected gets the page's label; deselected ones stay unlabeled), click and shift-click select.

Nothing is sent until Enter (or Accept page): the labels typed on tiles and the selection go to the server in one
step, so Undo takes the whole page back; the next page, fetched ahead (its images once the page shown has its
own), shows at once (the server's answer then replaces it). M (or a tile's ≈ button) shows the images most like
the focused tile; on likely-wrong labels K keeps a label and A takes the suggestion (Shift: every selected tile).
Keys are ignored while typing and while the Review tab is hidden.
"""

from __future__ import annotations

GRID_JS = r"""
(() => {
  if (window.__alGrid) return;
  window.__alGrid = true;
  const grid = () => {
    const g = document.querySelector("#al-review-grid .al-grid");
    return g && g.offsetParent ? g : null;
  };
  const tiles = () => Array.from(document.querySelectorAll("#al-review-grid .al-grid .al-tile"));
  const labels = () => Array.from(document.querySelectorAll("#al-review-labels input[type=radio]")).map((i) => i.value);
  const buttonOf = (id) => document.querySelector(`#${id} button, button#${id}`);
  let focus = 0, anchor = null;
  const draw = () => tiles().forEach((t, i) => t.classList.toggle("al-focus", i === focus));
  const columns = () => {
    const ts = tiles();
    if (ts.length < 2) return 1;
    const top = ts[0].offsetTop;
    const n = ts.findIndex((t) => t.offsetTop !== top);
    return n < 0 ? ts.length : n;
  };

  // Enter shows the next page at once: its tiles came hidden with this page (.al-grid-ahead) and
  // move into the grid while the server writes the labels and computes the page after. The server's answer then
  // replaces them; what was done on them meanwhile (selection, labels typed) is carried over to the same images.
  // Accept, Undo, Refresh and More like this asked for while the answer is on its way are kept and replayed in
  // order once it has come; if no answer comes (an error, or none in time), the page the server last showed is put
  // back and they are dropped.
  const WAIT_MS = 15000, HELD = ["al-review-accept", "al-review-undo", "al-review-refresh", "al-review-more"];
  let pending = null;
  const held = [];
  const mark = () => document.querySelector("#al-review-grid [data-page]")?.dataset.page || "";
  const touched = (tile) => {
    if (pending) pending.edits.set(tile.dataset.id, { selected: tile.classList.contains("al-selected"),
      label: tile.dataset.label || "" });
  };
  const setLabel = (tile, label) => {
    tile.dataset.label = label;
    const kept = !!label && label === tile.dataset.given;
    tile.querySelector(".al-tile-label").textContent = !label ? "" : kept ? "✓ keep " + label : "→ " + label;
    tile.classList.toggle("al-relabeled", !!label && !kept);
    tile.classList.toggle("al-kept", kept);
    touched(tile);
  };
  const toggle = (tile, on) => { tile.classList.toggle("al-selected", on); touched(tile); };
  // The next page's images (``data-src``) are asked for once the page shown has all its own, not before them
  const ask = (img) => { img.src = img.dataset.src; img.removeAttribute("data-src"); };
  const fetchAhead = () => {
    const own = document.querySelectorAll("#al-review-grid .al-grid img[src]");
    if (Array.from(own).some((i) => !i.complete)) return;
    document.querySelectorAll("#al-review-grid img[data-src]").forEach(ask);
  };
  const ofGrid = (e) => e.target instanceof HTMLImageElement && e.target.closest("#al-review-grid .al-grid");
  document.addEventListener("load", (e) => { if (ofGrid(e)) fetchAhead(); }, true);
  document.addEventListener("error", (e) => { if (ofGrid(e)) fetchAhead(); }, true);
  const swapAhead = () => {
    const g = document.querySelector("#al-review-grid .al-grid");
    const ahead = document.querySelector("#al-review-grid .al-grid-ahead");
    const next = ahead ? Array.from(ahead.children) : [];
    if (!g || !next.length) return null;
    const before = { nodes: Array.from(g.childNodes), page: g.dataset.page, count: g.dataset.count };
    next.forEach((t) => t.querySelectorAll("img[data-src]").forEach(ask));
    g.replaceChildren(...next);
    g.dataset.page = "ahead:" + before.page;
    g.dataset.count = String(next.length);
    focus = 0; anchor = null; draw();
    return { g, ahead, next, before };
  };
  const ERROR_TOAST = "[data-testid=toast-body].error";
  const settle = (failed) => {
    const p = pending;
    if (!p) return;
    pending = null;
    clearTimeout(p.timer);
    document.body.classList.remove("al-grid-pending");
    if (failed) {
      const s = p.swap;
      if (s && s.g.isConnected && s.g.dataset.page === "ahead:" + s.before.page) {
        s.ahead.replaceChildren(...s.next);
        s.g.replaceChildren(...s.before.nodes);
        s.g.dataset.page = s.before.page; s.g.dataset.count = s.before.count;
      }
      held.length = 0;
      draw();
      return;
    }
    const focused = p.focusId;
    tiles().forEach((t, i) => {
      const e = p.edits.get(t.dataset.id);
      if (e) { t.classList.toggle("al-selected", e.selected); setLabel(t, e.label); }
      if (t.dataset.id === focused) focus = i;
    });
    if (focus >= tiles().length) focus = 0;
    draw();
    while (!pending && held.length) held.shift()();
  };
  new MutationObserver((records) => {
    fetchAhead();
    const p = pending;
    if (!p) { if (focus >= tiles().length) focus = 0; draw(); return; }
    const now = mark();
    if (now && now !== p.page && now !== "ahead:" + p.page) {
      p.focusId = tiles()[focus]?.dataset.id;
      settle(false);
      return;
    }
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType === 1 && (n.matches(ERROR_TOAST) || n.querySelector(ERROR_TOAST))) { settle(true); return; }
      }
    }
  }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-page"] });
  const begin = (advance) => {
    const page = mark();
    const swap = advance ? swapAhead() : null;
    pending = { page, swap, edits: new Map(), focusId: null, timer: setTimeout(() => settle(true), WAIT_MS) };
    document.body.classList.add("al-grid-pending");
  };
  const read = () => {
    const ts = tiles();
    const relabel = {};
    ts.forEach((t) => { if (t.dataset.label) relabel[t.dataset.id] = t.dataset.label; });
    const accept = ts
      .filter((t) => t.classList.contains("al-selected") && !t.dataset.label)
      .map((t) => Number(t.dataset.id));
    return JSON.stringify({ accept, relabel, shown: ts.map((t) => Number(t.dataset.id)) });
  };
  // Accept page (the button or Enter): what the page holds is read and the next page put on screen in the click
  // itself, before Gradio's own handling; the button's script (`alGridAction`) then sends what was read
  let staged = null;
  window.alGridAction = () => {
    const action = staged === null ? read() : staged;
    staged = null;
    return action;
  };
  window.alGridFocused = () => { const t = tiles()[focus]; begin(false); return t ? t.dataset.id : ""; };
  const waits = (b) => b && HELD.some((id) => buttonOf(id) === b);
  document.addEventListener("click", (e) => {
    const choice = e.target.closest && e.target.closest("#al-review-source label, #al-review-labels label");
    if (choice && pending) {  // another source or label: after the answer, or that answer would replace its page
      e.preventDefault(); e.stopImmediatePropagation();
      if (held.length < 10) held.push(() => choice.click());
      return;
    }
    const b = e.target.closest && e.target.closest("button");
    if (!waits(b)) return;
    if (pending) {
      e.preventDefault(); e.stopImmediatePropagation();
      if (e.detail <= 1 && held.length < 10) held.push(() => b.click());
    } else if (b === buttonOf("al-review-accept")) {
      staged = read();
      begin(true);
    } else if (b === buttonOf("al-review-undo") || b === buttonOf("al-review-refresh")) {
      begin(false);
    }
  }, true);
  document.addEventListener("click", (e) => {
    const more = e.target.closest && e.target.closest("#al-review-grid .al-grid .al-tile-more");
    const tile = e.target.closest && e.target.closest("#al-review-grid .al-grid .al-tile");
    if (!tile) return;
    const ts = tiles(), i = ts.indexOf(tile);
    if (more) {
      e.preventDefault();
      focus = i; draw();
      buttonOf("al-review-more")?.click();
      return;
    }
    if (e.shiftKey && anchor !== null) {
      const [a, b] = [Math.min(anchor, i), Math.max(anchor, i)];
      for (let k = a; k <= b; k++) toggle(ts[k], true);
    } else {
      toggle(tile, !tile.classList.contains("al-selected"));
      anchor = i;
    }
    focus = i;
    draw();
  });
  document.addEventListener("keydown", (e) => {
    if (!grid() || e.ctrlKey || e.metaKey || e.altKey) return;
    const el = document.activeElement;
    const typing = el && (el.tagName === "TEXTAREA" || el.isContentEditable);
    if (typing || (el && el.tagName === "INPUT" && el.type !== "radio")) return;
    const ts = tiles();
    if (!ts.length) return;
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[e.key];
    const done = () => { e.preventDefault(); e.stopImmediatePropagation(); };
    if (step) { focus = Math.max(0, Math.min(ts.length - 1, focus + step)); draw(); done(); return; }
    if (e.key === " ") { toggle(ts[focus], !ts[focus].classList.contains("al-selected")); done(); return; }
    const targets = () => (e.shiftKey ? ts.filter((t) => t.classList.contains("al-selected")) : [ts[focus]]);
    const digit = /^Digit([0-9])$/.exec(e.code);
    if (digit) {
      const n = Number(digit[1]), label = labels()[n === 0 ? 9 : n - 1];
      if (!label) return;
      targets().forEach((t) => setLabel(t, label));
      done();
      return;
    }
    const key = e.key.toLowerCase();
    if ((key === "k" || key === "a") && ts[focus].dataset.given) {  // a likely-wrong label: keep it, or the suggestion
      const pick = (t) => (key === "k" ? t.dataset.given : t.dataset.suggested);
      targets().filter((t) => t.dataset.given).forEach((t) => setLabel(t, pick(t)));
      done();
      return;
    }
    if (key === "m" && !e.shiftKey) { buttonOf("al-review-more")?.click(); done(); return; }
    if (e.key === "Enter") {
      const button = buttonOf("al-review-accept");
      if (button) { button.click(); done(); }
    }
  }, true);
})();
"""

GRID_HEAD = f"<script>{GRID_JS}</script>"

KEYS_HELP = (
    "<kbd>←</kbd> <kbd>↑</kbd> <kbd>→</kbd> <kbd>↓</kbd> move · <kbd>Space</kbd> select / deselect · "
    "<kbd>1</kbd>–<kbd>9</kbd>, <kbd>0</kbd> label the focused image (<kbd>Shift</kbd>: every selected one) · "
    "<kbd>M</kbd> / ≈ more like this · <kbd>K</kbd> keep a likely-wrong label, <kbd>A</kbd> take the suggestion · "
    "<kbd>Enter</kbd> accept the page · click, shift-click select"
)
