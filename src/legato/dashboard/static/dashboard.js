// Legato dashboard: refresh the header's counts, and confirm the buttons that cannot be undone.
"use strict";
(function () {
  const counts = document.getElementById("counts");
  async function refresh() {
    try {
      const r = await fetch(counts.dataset.url, { headers: { Accept: "application/json" } });
      if (!r.ok) return;
      const text = (await r.json()).text;
      for (const el of counts.querySelectorAll("[data-summary]")) {
        const value = text[el.dataset.summary];
        if (value !== undefined) el.textContent = value;
      }
    } catch (e) { /* the next tick tries again */ }
  }
  if (counts) setInterval(refresh, 3000);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
})();
