// postroom admin UI: progressive enhancement only. Every form works without this file.
"use strict";
document.documentElement.classList.add("js");

function fieldByName(form, name) {
  return form.querySelector('[name="' + name + '"]');
}

// Fields shown only for some choice: data-show-when="smtp.auth=basic|oauth2"
function wireConditional(form) {
  const blocks = form.querySelectorAll("[data-show-when]");
  const update = () => {
    blocks.forEach((block) => {
      const [name, wanted] = block.dataset.showWhen.split("=");
      const input = fieldByName(form, name);
      if (!input) return;
      block.hidden = !wanted.split("|").includes(input.value);
    });
  };
  form.addEventListener("change", update);
  update();
}

// Stored secrets show as "set" with a Change button; the input appears when asked for.
function wireSecrets(root) {
  root.querySelectorAll(".secret-field[data-collapsed]").forEach((box) => {
    const button = box.querySelector("[data-change]");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      box.removeAttribute("data-collapsed");
      button.hidden = true;
      const input = box.querySelector("input[type=password]");
      if (input) input.focus();
    });
  });
}

// Provider presets fill host, port and security at once.
function wirePresets(form) {
  const select = form.querySelector("#preset");
  const data = document.getElementById("presets-data");
  const note = document.getElementById("preset-note");
  if (!select || !data) return;
  const presets = JSON.parse(data.textContent);
  select.addEventListener("change", () => {
    const preset = presets.find((p) => p.key === select.value);
    if (note) {
      note.textContent = preset ? preset.signin : "";
      note.hidden = !preset;
    }
    if (!preset) return;
    // Same rule as the server's apply_preset: a typed username stays when the preset has
    // none; one another preset filled in ("apikey") is cleared.
    Object.entries(preset.values).forEach(([name, value]) => {
      const input = fieldByName(form, name);
      if (!input) return;
      if (name === "smtp.username" && !value && !preset.preset_usernames.includes(input.value)) return;
      input.value = value;
    });
    form.dispatchEvent(new Event("change"));
  });
}

// Test SMTP / Test IMAP: post the unsaved form, show the diagnosis in place.
function wireTests(form) {
  form.addEventListener("submit", async (event) => {
    const button = event.submitter;
    if (!button || !button.value || !button.value.startsWith("test_")) return;
    event.preventDefault();
    const kind = button.value.slice(5);
    const target = document.getElementById("result-" + kind);
    if (!target) return;
    const body = new FormData(form, button);
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    target.innerHTML = '<p class="testing" role="status">Testing ' + kind.toUpperCase() + "…</p>";
    try {
      // form.action would be the button named "action"; read the attribute instead.
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-Requested-With": "postroom-fetch" },
      });
      // 429 (too many tests) and 403 (turned off by the operator) come as a result fragment too
      if (response.ok || response.status === 422 || response.headers.get("X-Postroom-Result")) {
        target.innerHTML = await response.text();
      } else {
        target.innerHTML =
          '<div class="alert alert-error" role="alert">The test could not run (HTTP ' +
          response.status + "). Reload the page and try again.</div>";
      }
    } catch (err) {
      target.innerHTML =
        '<div class="alert alert-error" role="alert">Postroom did not answer. Check that it is running and try again.</div>';
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      const heading = target.querySelector("[tabindex]");
      if (heading) heading.focus();
    }
  });
}

// Enter in a field that belongs to a test (data-enter-action="test_smtp") runs that test.
// Without this, implicit submission uses the form's first submit button, the hidden Save,
// and untested settings would go live.
function wireEnterActions(form) {
  form.querySelectorAll("[data-enter-action]").forEach((input) => {
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      const wanted = input.dataset.enterAction;
      const button = Array.from(form.querySelectorAll('button[name="action"]')).find(
        (b) => b.value === wanted,
      );
      if (!button) return;
      event.preventDefault();
      if (!button.disabled) form.requestSubmit(button);
    });
  });
}

// Template Preview: post the unsaved form, show the rendered mail (or the error) in place.
function wirePreview(form) {
  const target = document.getElementById("template-preview");
  if (!target) return;
  form.addEventListener("submit", async (event) => {
    const button = event.submitter;
    if (!button || !button.hasAttribute("data-preview")) return;
    event.preventDefault();
    const body = new FormData(form, button);
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-Requested-With": "postroom-fetch" },
      });
      if (response.ok || response.status === 422) {
        target.innerHTML = await response.text();
      } else {
        target.innerHTML =
          '<div class="alert alert-error" role="alert">The preview could not run (HTTP ' +
          response.status + "). Reload the page and try again.</div>";
      }
    } catch (err) {
      target.innerHTML =
        '<div class="alert alert-error" role="alert">Postroom did not answer. Check that it is running and try again.</div>';
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      const alert = target.querySelector("[tabindex]");
      if (alert) alert.focus();
    }
  });
}

// Row menus (More ▾) live inside the table's scroll box, which clips anything absolutely
// positioned below its edge: with one or two rows most items were cut off. While open, the
// panel is placed with position: fixed at the summary (above it when there is no room below).
function placeMenu(menu) {
  const panel = menu.querySelector(".menu-panel");
  const summary = menu.querySelector("summary");
  if (!panel || !summary) return;
  if (!menu.open) {
    panel.classList.remove("menu-fixed");
    panel.style.top = panel.style.left = "";
    return;
  }
  panel.classList.add("menu-fixed");
  panel.style.top = panel.style.left = "";
  const anchor = summary.getBoundingClientRect();
  const box = panel.getBoundingClientRect();
  const gap = 5;
  let top = anchor.bottom + gap;
  if (top + box.height > window.innerHeight && anchor.top - gap - box.height >= 0) {
    top = anchor.top - gap - box.height;
  }
  let left = anchor.right - box.width;
  if (left < gap) left = Math.min(anchor.left, window.innerWidth - box.width - gap);
  panel.style.top = Math.max(gap, top) + "px";
  panel.style.left = Math.max(gap, left) + "px";
}

function wireMenus() {
  const menus = Array.from(document.querySelectorAll("details.menu"));
  if (!menus.length) return;
  menus.forEach((menu) => {
    menu.addEventListener("toggle", () => {
      if (menu.open) menus.forEach((other) => { if (other !== menu) other.open = false; });
      placeMenu(menu);
    });
  });
  // A fixed panel would float away from its row: follow it on any scroll (the page or the
  // table's box; capture sees both) and on resize.
  const follow = () => menus.forEach((menu) => { if (menu.open) placeMenu(menu); });
  window.addEventListener("scroll", follow, { passive: true, capture: true });
  window.addEventListener("resize", follow);
  document.addEventListener("click", (event) => {
    menus.forEach((menu) => { if (menu.open && !menu.contains(event.target)) menu.open = false; });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    menus.forEach((menu) => {
      if (!menu.open) return;
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
}

wireMenus();

document.querySelectorAll("form[data-template-editor]").forEach(wirePreview);

document.querySelectorAll("form[data-enhance]").forEach((form) => {
  wireConditional(form);
  wireSecrets(form);
  wirePresets(form);
  wireTests(form);
  wireEnterActions(form);
});

// The outbox's counts by status refresh themselves; without this file they are plain links.
function wireLiveCounts(list) {
  const url = list.dataset.liveCounts;
  const refresh = async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const counts = await response.json();
      list.querySelectorAll(".count[data-status]").forEach((span) => {
        const value = counts[span.dataset.status] || 0;
        span.textContent = String(value);
        const item = span.closest("li");
        if (span.dataset.status !== "all") item.hidden = value === 0;
      });
      list.dataset.refreshed = String(Date.now());
    } catch (error) {
      // offline for a moment: keep the last counts
    }
  };
  const seconds = Number(list.dataset.refreshSeconds || 10);
  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
}

document.querySelectorAll("[data-live-counts]").forEach(wireLiveCounts);
