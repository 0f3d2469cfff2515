"""Keyboard shortcuts, injected with `launch(head=...)`: they click the panel's own buttons and label choices.

Keys are ignored while the focus is in a text field, and while the labeling tab is hidden.
"""

from __future__ import annotations

KEYS_HELP = (
    "<kbd>1</kbd>–<kbd>9</kbd>, <kbd>0</kbd> pick a label · <kbd>Enter</kbd> submit · <kbd>S</kbd> skip · "
    "<kbd>U</kbd> / <kbd>Backspace</kbd> undo · <kbd>←</kbd> <kbd>→</kbd> previous / next"
)

HOTKEYS_JS = r"""
(() => {
  if (window.__alHotkeys) return;
  window.__alHotkeys = true;
  const TYPING = new Set(["text", "search", "email", "number", "password", "url", "tel", "date", "time", "range"]);
  const typing = (el) => {
    if (!el) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TYPING.has((el.type || "text").toLowerCase());
  };
  const shown = (el) => el && el.offsetParent !== null;
  const click = (id) => {
    const root = document.getElementById(id);
    const el = root && (root.tagName === "BUTTON" ? root : root.querySelector("button"));
    if (el && shown(el) && !el.disabled) { el.click(); return true; }
    return false;
  };
  const ACTIONS = {
    Enter: "al-submit", s: "al-skip", S: "al-skip", u: "al-undo", U: "al-undo", Backspace: "al-undo",
    ArrowLeft: "al-prev", ArrowRight: "al-next",
  };
  // a clicked label must not keep the focus: it would look picked for the next image
  document.addEventListener("change", (e) => {
    if (e.target.matches && e.target.matches("#al-labels input")) setTimeout(() => e.target.blur(), 0);
  });
  // a button clicked with the mouse (Open, Start Project, ...) must not keep the focus, or Enter would press it again
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest("button");
    const panel = document.getElementById("al-panel");
    if (button && e.detail > 0 && !(panel && panel.contains(button))) setTimeout(() => button.blur(), 0);
  });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    if (!shown(document.getElementById("al-panel"))) return;
    if (/^[0-9]$/.test(e.key)) {
      const inputs = document.querySelectorAll("#al-labels input[type=radio]");
      const input = inputs[e.key === "0" ? 9 : Number(e.key) - 1];
      if (!input) return;
      e.preventDefault();
      if (input.checked) { click("al-submit"); } else { input.click(); }
      return;
    }
    const target = ACTIONS[e.key];
    if (!target) return;
    const panel = document.getElementById("al-panel");
    // Enter on a control focused with the keyboard (Tab) outside the panel keeps its own meaning
    const control = e.target.closest && e.target.closest("button, a");
    if (e.key === "Enter" && control && !panel.contains(control)) return;
    e.preventDefault();
    if (e.repeat && target === "al-undo") return;
    click(target);
  });
})();
"""

HEAD = f"<script>{HOTKEYS_JS}</script>"

INIT_JS = r"""
(client, project) => {
  let id = client, saved = null;
  try {
    id = sessionStorage.getItem("al-client");
    if (!id) {
      id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
        : Date.now().toString(16) + Math.random().toString(16).slice(2) + Math.random().toString(16).slice(2);
      sessionStorage.setItem("al-client", id);
    }
    saved = sessionStorage.getItem("al-project");
  } catch (e) {}
  return [id, saved || project];
}
"""

REMEMBER_PROJECT_JS = r"""
(project) => { try { sessionStorage.setItem("al-project", project || ""); } catch (e) {} return []; }
"""
