"""The review grid's keys and mouse, injected with the page's head: arrows move a focus ring, Space toggles a tile,
a number key labels the focused tile with that label (Shift + number: every selected tile), Enter accepts the page
(every tile still selected gets the page's label; deselected ones stay unlabeled), click and shift-click select.

Nothing is sent until Enter (or Accept page): the labels typed on tiles and the selection go to the server in one
step, so Undo takes the whole page back. Keys are ignored while typing and while the Review tab is hidden.
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
  const tiles = () => Array.from(document.querySelectorAll("#al-review-grid .al-tile"));
  const labels = () => Array.from(document.querySelectorAll("#al-review-labels input[type=radio]")).map((i) => i.value);
  let focus = 0, anchor = null;
  const draw = () => tiles().forEach((t, i) => t.classList.toggle("al-focus", i === focus));
  const columns = () => {
    const ts = tiles();
    if (ts.length < 2) return 1;
    const top = ts[0].offsetTop;
    const n = ts.findIndex((t) => t.offsetTop !== top);
    return n < 0 ? ts.length : n;
  };
  const setLabel = (tile, label) => {
    tile.dataset.label = label;
    tile.querySelector(".al-tile-label").textContent = label ? "→ " + label : "";
    tile.classList.toggle("al-relabeled", !!label);
  };
  window.alGridAction = () => {
    const ts = tiles();
    const relabel = {};
    ts.forEach((t) => { if (t.dataset.label) relabel[t.dataset.id] = t.dataset.label; });
    const accept = ts
      .filter((t) => t.classList.contains("al-selected") && !t.dataset.label)
      .map((t) => Number(t.dataset.id));
    return JSON.stringify({ accept, relabel, shown: ts.map((t) => Number(t.dataset.id)) });
  };
  document.addEventListener("click", (e) => {
    const tile = e.target.closest && e.target.closest("#al-review-grid .al-tile");
    if (!tile) return;
    const ts = tiles(), i = ts.indexOf(tile);
    if (e.shiftKey && anchor !== null) {
      const [a, b] = [Math.min(anchor, i), Math.max(anchor, i)];
      for (let k = a; k <= b; k++) ts[k].classList.add("al-selected");
    } else {
      tile.classList.toggle("al-selected");
      anchor = i;
    }
    focus = i;
    draw();
  });
  new MutationObserver(() => { if (focus >= tiles().length) focus = 0; draw(); })
    .observe(document.body, { childList: true, subtree: true });
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
    if (e.key === " ") { ts[focus].classList.toggle("al-selected"); done(); return; }
    const digit = /^Digit([0-9])$/.exec(e.code);
    if (digit) {
      const n = Number(digit[1]), label = labels()[n === 0 ? 9 : n - 1];
      if (!label) return;
      const targets = e.shiftKey ? ts.filter((t) => t.classList.contains("al-selected")) : [ts[focus]];
      targets.forEach((t) => setLabel(t, label));
      done();
      return;
    }
    if (e.key === "Enter") {
      const button = document.querySelector("#al-review-accept button, button#al-review-accept");
      if (button) { button.click(); done(); }
    }
  }, true);
})();
"""

GRID_HEAD = f"<script>{GRID_JS}</script>"

KEYS_HELP = (
    "<kbd>←</kbd> <kbd>↑</kbd> <kbd>→</kbd> <kbd>↓</kbd> move · <kbd>Space</kbd> select / deselect · "
    "<kbd>1</kbd>–<kbd>9</kbd>, <kbd>0</kbd> label the focused image (<kbd>Shift</kbd>: every selected one) · "
    "<kbd>Enter</kbd> accept the page · click, shift-click select"
)
