"""Keyboard shortcuts, injected with `launch(head=...)`: they click the panel's own buttons and label choices.

Keys are ignored while the focus is in a text field, and while the labeling tab is hidden. The same script opens
the zoom of the labeling image, shows a message once while it is on screen (a key pressed again and again does not
stack up copies of it), and folds the project column on a phone (`app.ui.style`).
"""

from __future__ import annotations

from app.ui.style import PHONE_CSS

KEYS_HELP = (
    "<kbd>1</kbd>–<kbd>9</kbd>, <kbd>0</kbd> pick a label · <kbd>A</kbd> / <kbd>Space</kbd> accept the model's "
    "guess · <kbd>Enter</kbd> submit · <kbd>S</kbd> skip · <kbd>U</kbd> / <kbd>Backspace</kbd> undo · "
    "<kbd>←</kbd> <kbd>→</kbd> previous / next · click the image to zoom, <kbd>Esc</kbd> closes it"
)

HOTKEYS_JS = r"""
(() => {
  if (window.__alHotkeys) return;
  window.__alHotkeys = true;
  // An image asked for before the tab's image cookie was set (a project opened as the page loads) is refused:
  // ask for it again a few times, a little later each time, with a fresh URL so no answer is reused.
  document.addEventListener("error", (event) => {
    const img = event.target;
    if (!(img instanceof HTMLImageElement) || !img.src.includes("/alabel/image/")) return;
    const tries = Number(img.dataset.alRetry || 0);
    if (tries >= 6) return;
    img.dataset.alRetry = String(tries + 1);
    const url = new URL(img.src);
    url.searchParams.set("retry", String(tries + 1));
    setTimeout(() => { img.src = url.toString(); }, 200 * (tries + 1));
  }, true);
  const TYPING = new Set(["text", "search", "email", "number", "password", "url", "tel", "date", "time", "range"]);
  const typing = (el) => {
    if (!el) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TYPING.has((el.type || "text").toLowerCase());
  };
  const shown = (el) => el && el.offsetParent !== null;
  const buttonOf = (id) => {
    const root = document.getElementById(id);
    return root && (root.tagName === "BUTTON" ? root : root.querySelector("button"));
  };
  const click = (id) => {
    const el = buttonOf(id);
    if (el && shown(el) && !el.disabled) { el.click(); return true; }
    return false;
  };
  const ACTIONS = {
    Enter: "al-submit", s: "al-skip", S: "al-skip", u: "al-undo", U: "al-undo", Backspace: "al-undo",
    ArrowLeft: "al-prev", ArrowRight: "al-next", a: "al-accept", A: "al-accept", " ": "al-accept",
  };
  const BUTTONS = ["al-submit", "al-accept", "al-skip", "al-undo", "al-prev", "al-next"];
  // Space keeps its own meaning on these when they have the focus
  const SPACE_KEEPS = "button, a, input, select, summary, [role=button], [role=tab], [role=option], [role=checkbox]";

  // One labeling action at a time. An action that moves on to the next image of the batch shows that image at
  // once (the browser fetched it ahead, see #al-prefetch); the server's answer then fills in its caption and the
  // model's guess, or shows another image if it chose one. Actions asked for while an answer is on its way are
  // kept and replayed in order, so each applies to the image it was meant for; they are dropped if the server
  // showed another image than the one on screen.
  const WAIT_MS = 10000;
  let pending = null;
  const held = [];
  const frame = () => document.querySelector("#al-image .al-frame");
  const picked = () => document.querySelector("#al-labels input[type=radio]:checked");
  const autoSubmit = () => !!document.querySelector("#al-auto input:checked");
  const guessed = () => !!document.querySelector("#al-predictions [data-testid=label-output-value]")?.textContent;
  const showNext = () => {
    const f = frame(), img = f && f.querySelector("img");
    const next = document.querySelector("#al-prefetch img[data-id]");
    if (!img || !next || next.dataset.id === f.dataset.id) return null;
    const small = f.classList.contains("al-small");
    const before = { id: f.dataset.id, src: img.getAttribute("src"), alt: img.alt, small };
    img.setAttribute("src", next.getAttribute("src"));
    img.alt = next.alt;
    f.dataset.id = next.dataset.id;
    f.classList.toggle("al-small", next.dataset.small === "1");
    return { frame: f, img, before, id: next.dataset.id };
  };
  const answer = () => document.querySelector("#al-answer [data-answer]")?.dataset.answer || "";
  const ERROR_TOAST = "[data-testid=toast-body].error";
  // an error shown while an answer is awaited: that answer will not come
  const errors = new MutationObserver((records) => {
    if (!pending) return;
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType === 1 && (n.matches(ERROR_TOAST) || n.querySelector(ERROR_TOAST))) { settle(true); return; }
      }
    }
  });
  const begin = (advances) => {
    watchAnswers();
    const timer = setTimeout(() => settle(true), WAIT_MS);
    pending = { swap: advances ? showNext() : null, timer, answer: answer(), settling: false };
    errors.observe(document.body, { childList: true, subtree: true });
    document.body.classList.add("al-pending");
  };
  const settle = (failed) => {
    if (!pending) return;
    const { swap, timer } = pending;
    clearTimeout(timer);
    errors.disconnect();
    pending = null;
    document.body.classList.remove("al-pending");
    if (failed) {  // no answer (an error was shown, or none came in time): put back what the server last showed
      if (swap && frame() === swap.frame) {
        const b = swap.before;
        swap.img.setAttribute("src", b.src); swap.img.alt = b.alt; swap.frame.dataset.id = b.id;
        swap.frame.classList.toggle("al-small", b.small);
      }
      held.length = 0;
      return;
    }
    const f = frame();
    if (swap && !(f && f.dataset.id === swap.id)) { held.length = 0; return; }
    while (!pending && held.length) held.shift()();  // until one of them waits for an answer again
  };
  let watched = null;
  const watchAnswers = () => {
    const el = document.getElementById("al-answer");
    if (!el || el === watched) return;
    watched = el;
    // a new answer mark has arrived; the answer's other outputs are drawn in the same update, look once they are
    // (the mark's component redraws more than once per answer: settle each pending action once, and only that one)
    new MutationObserver(() => {
      const p = pending;
      if (!p || p.settling || answer() === p.answer) return;
      p.settling = true;
      setTimeout(() => { if (pending === p) settle(false); }, 0);
    }).observe(el, { subtree: true, childList: true, characterData: true, attributes: true });
  };
  const isAction = (t) => {
    if (!t || !t.closest) return false;
    if (t.matches && t.matches("#al-labels input[type=radio]")) return true;
    const b = t.closest("button");
    return !!b && BUTTONS.some((id) => buttonOf(id) === b);
  };
  document.addEventListener("click", (e) => {
    if (!isAction(e.target)) return;
    const target = e.target.matches("#al-labels input") ? e.target : e.target.closest("button");
    if (pending) {
      e.preventDefault();
      e.stopImmediatePropagation();
      // the second click of a double click was meant for the image the first one labeled: dropped
      if (e.detail <= 1 && held.length < 20) held.push(() => target.click());
      return;
    }
    if (target.tagName === "INPUT") return;  // a label: the answer is awaited from its "input" event below
    const submit = target === buttonOf("al-submit"), skip = target === buttonOf("al-skip");
    const accept = target === buttonOf("al-accept");
    const f = frame();
    begin((submit && !!picked()) || (accept && guessed()) || (skip && !!(f && f.dataset.id)));
  }, true);
  document.addEventListener("input", (e) => {
    if (!pending && e.target.matches && e.target.matches("#al-labels input[type=radio]")) begin(autoSubmit());
  }, true);

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
  const labelInput = (key) => {
    const inputs = document.querySelectorAll("#al-labels input[type=radio]");
    return inputs[key === "0" ? 9 : Number(key) - 1];
  };
  const press = (key) => {
    if (/^[0-9]$/.test(key)) {
      const input = labelInput(key);
      if (!input) return;
      if (input.checked) { click("al-submit"); } else { input.click(); }
      return;
    }
    click(ACTIONS[key]);
  };
  document.addEventListener("keydown", (e) => {
    if (zoomed() && e.key === "Escape") { e.preventDefault(); closeZoom(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    if (!shown(document.getElementById("al-panel"))) return;
    const digit = /^[0-9]$/.test(e.key);
    const target = ACTIONS[e.key];
    if (!digit && !target) return;
    if (digit && !labelInput(e.key)) return;
    const panel = document.getElementById("al-panel");
    // Enter on a control focused with the keyboard (Tab) outside the panel keeps its own meaning
    const control = e.target.closest && e.target.closest("button, a");
    if (e.key === "Enter" && control && !panel.contains(control)) return;
    // Space keeps its own meaning on a focused control, and scrolls the page while the model has no guess
    if (e.key === " " && ((e.target.closest && e.target.closest(SPACE_KEEPS)) || (!pending && !guessed()))) return;
    closeZoom();  // a key acts on the image under the zoom: the zoom closes
    e.preventDefault();
    if (e.repeat) return;  // a key held down acts once
    if (pending) { if (held.length < 20) held.push(() => press(e.key)); return; }
    press(e.key);
  });

  // The zoom: a click on the labeling image shows it over the whole page; Esc or a click closes it.
  const zoomed = () => !!document.getElementById("al-zoom");
  const closeZoom = () => document.getElementById("al-zoom")?.remove();
  document.addEventListener("click", (e) => {
    const img = e.target.closest && e.target.closest("#al-image .al-frame img");
    if (!img || e.button !== 0) return;
    e.preventDefault();
    closeZoom();
    const zoom = document.createElement("div"), big = document.createElement("img");
    zoom.id = "al-zoom";
    zoom.setAttribute("role", "dialog");
    zoom.setAttribute("aria-label", "The image, zoomed in: Esc or a click closes it");
    zoom.classList.toggle("al-small", !!img.closest(".al-small"));
    big.src = img.getAttribute("src");
    big.alt = img.alt;
    zoom.appendChild(big);
    zoom.addEventListener("click", closeZoom);
    document.body.appendChild(zoom);
  });

  // One toast per message: Gradio lists every message of a kind in one toast; the same message again while it is
  // on screen (a key pressed faster than the warning fades) is hidden, with the count in the toast's title.
  const refreshToasts = () => {
    const seen = new Set();
    document.querySelectorAll(".toast-message-item").forEach((item) => {
      const text = item.textContent.trim(), twin = seen.has(text);
      seen.add(text);
      item.classList.toggle("al-twin", twin);
      const line = item.previousElementSibling;  // the separator above it
      if (line && line.classList.contains("toast-separator")) line.classList.toggle("al-twin", twin);
    });
  };
  let toastsQueued = false;
  new MutationObserver((records) => {
    if (toastsQueued || !records.some((r) => r.target.closest && r.target.closest(".toast-wrap"))) return;
    toastsQueued = true;
    queueMicrotask(() => { toastsQueued = false; refreshToasts(); });
  }).observe(document.body, { childList: true, subtree: true });

  // A phone: the button in the header shows or hides the project column (`app.ui.style`).
  document.addEventListener("click", (e) => {
    const toggle = e.target.closest && e.target.closest("#al-side-toggle");
    if (!toggle) return;
    const open = document.body.classList.toggle("al-side-open");
    toggle.setAttribute("aria-expanded", String(open));
    if (open) document.getElementById("al-side")?.scrollIntoView({ block: "start" });
  });
})();
"""

HEAD = f"<script>{HOTKEYS_JS}</script><style>{PHONE_CSS}</style>"

# The page's images come with a cookie holding the tab's server-signed id (see `app.ui.image_route`); its name
# carries the page's port, so two apps on one computer do not overwrite each other's.
_COOKIE_JS = r"""
const alSetClientCookie = (client) => {
  if (!client) return;
  const name = "alabel_client_" + (location.port || (location.protocol === "https:" ? "443" : "80"));
  const where = location.protocol === "https:" ? "SameSite=None; Secure; Partitioned" : "SameSite=Strict";
  document.cookie = name + "=" + client + "; path=/; " + where;
};
"""

INIT_JS = (
    r"""
(client, project, workspace) => {
"""
    + _COOKIE_JS
    + r"""
  let id = client, saved = null;
  try {
    id = sessionStorage.getItem("al-client") || "";
    saved = sessionStorage.getItem("al-project");
  } catch (e) {}
  alSetClientCookie(id);
  return [id, saved || project, workspace];
}
"""
)

# The server answers `init` with the tab's signed id; the tab keeps it for its reloads, and sets the image cookie
# from it, then asks again for the images that were refused before the cookie was there.
REMEMBER_CLIENT_JS = (
    r"""
(client) => {
"""
    + _COOKIE_JS
    + r"""
  try { if (client) sessionStorage.setItem("al-client", client); } catch (e) {}
  alSetClientCookie(client);
  document.querySelectorAll("#al-image img, #al-prefetch img").forEach((img) => {
    const src = img.getAttribute("src");
    if (src && !(img.complete && img.naturalWidth)) { img.removeAttribute("src"); img.setAttribute("src", src); }
  });
  return [];
}
"""
)

REMEMBER_PROJECT_JS = r"""
(project) => { try { sessionStorage.setItem("al-project", project || ""); } catch (e) {} return []; }
"""
