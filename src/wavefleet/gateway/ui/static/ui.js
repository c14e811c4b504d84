// Wavefleet status page: polls /ui/status.json every 2 s and redraws. Every value from the
// gateway goes in through textContent or dataset, never as markup: model names are user input.
"use strict";
(() => {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  const seconds = (s) => s == null ? "–" : s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
  const percent = (r) => r == null ? "–" : `${(r * 100).toFixed(r > 0 && r < 0.1 ? 1 : 0)} %`;
  const rate = (r) => r == null ? "–" : r.toFixed(r < 10 ? 2 : 1);
  const number = (v, digits) => v == null ? "–" : v.toFixed(digits);
  const energy = (wh) => wh == null ? "–" : wh >= 1000 ? `${(wh / 1000).toFixed(2)} kWh` : `${wh.toFixed(wh < 10 ? 2 : 1)} Wh`;
  const money = (v, currency) => v == null ? "–" : `${v.toFixed(v < 0.01 ? 4 : v < 1 ? 3 : 2)} ${currency || ""}`.trim();
  const STATE_TEXT = { healthy: "healthy", "half-open": "probing", open: "circuit open", failed: "failed" };

  function backendCard(b) {
    const facts = el("dl", { class: "facts" });
    const fact = (label, value) => { facts.append(el("dt", { text: label }), el("dd", { text: value })); };
    fact("In flight", String(b.inflight));
    if (b.running != null) fact("Running", String(b.running));
    if (b.waiting != null) fact("Queued", String(b.waiting));
    if (b.kv_usage != null) fact("KV cache", percent(b.kv_usage));
    if (b.poll_failures) fact("Failed polls", String(b.poll_failures));
    const models = b.models.length
      ? el("ul", { class: "chips", "aria-label": "models" }, b.models.map((m) => el("li", { text: m })))
      : el("p", { class: "empty", text: "takes any model name" });
    return el("article", { class: "card backend", data: { backend: b.name, state: b.state } }, [
      el("h3", {}, [
        el("span", {}, [el("span", { class: "name", text: b.name }), document.createTextNode(" "), el("span", { class: "kind", text: b.kind })]),
        el("span", { class: `state ${b.state}`, text: STATE_TEXT[b.state] || b.state }),
      ]),
      models, facts,
      b.error ? el("p", { class: "why", text: b.error }) : null,
    ]);
  }

  function modelRow(m, currency) {
    const cell = (text, cls) => el("td", { class: cls || "num", text });
    const errorRate = cell(percent(m.error_rate), m.error_rate ? "num bad" : "num");
    return el("tr", { data: { model: m.model } }, [
      el("td", { class: "model", text: m.model }),
      cell(m.backends.join(", ") || "–", ""),
      cell(rate(m.requests_per_s)), errorRate,
      cell(seconds(m.ttft_p50_s)), cell(seconds(m.ttft_p95_s)),
      cell(seconds(m.tpot_p50_s)), cell(seconds(m.tpot_p95_s)),
      cell(String(m.requests)),
      cell(energy(m.wh_per_h)), cell(money(m.cost_per_h, currency)),
      cell(m.cost_per_1k_tokens != null ? money(m.cost_per_1k_tokens, currency) : energy(m.wh_per_1k_tokens)),
    ]);
  }

  function deviceCard(d) {
    const facts = el("dl", { class: "facts" });
    const fact = (label, value) => { facts.append(el("dt", { text: label }), el("dd", { text: value })); };
    fact("Power", d.power_w == null ? "not reported" : `${number(d.power_w, 1)} W${d.power_estimated ? " (estimate)" : ""}`);
    fact("Memory", d.memory_used_mib == null ? "not reported"
      : `${number(d.memory_used_mib / 1024, 1)}${d.memory_total_mib == null ? "" : ` of ${number(d.memory_total_mib / 1024, 1)}`} GiB`);
    fact("Temperature", d.temperature_c == null ? "not reported" : `${number(d.temperature_c, 0)} °C`);
    fact("Utilisation", d.utilisation_pct == null ? "not reported" : `${number(d.utilisation_pct, 0)} %`);
    return el("article", { class: "card device", data: { device: d.name } }, [
      el("h3", {}, [el("span", { class: "name", text: d.name }), el("span", { class: "kind", text: d.collector })]),
      facts,
    ]);
  }

  function errorItem(e) {
    const when = new Date(e.at * 1000).toLocaleTimeString();
    const where = [e.model, e.backend].filter(Boolean).join(" on ") || "gateway";
    return el("li", {}, [
      el("span", { class: "meta" }, [el("span", { class: "status", text: String(e.status) }), document.createTextNode(` · ${when} · ${where}`)]),
      el("span", { class: "message", text: e.message }),
    ]);
  }

  function draw(s) {
    const totalRate = s.models.reduce((sum, m) => sum + (m.requests_per_s || 0), 0);
    const rated = s.models.filter((m) => m.error_rate != null);
    const recent = rated.reduce((sum, m) => sum + (m.requests_per_s || 0), 0);
    const failing = rated.reduce((sum, m) => sum + (m.requests_per_s || 0) * m.error_rate, 0);
    $("t-backends").textContent = `${s.summary.healthy} / ${s.summary.backends}`;
    $("t-backends").className = s.summary.healthy < s.summary.backends ? "value bad" : "value";
    $("t-rate").textContent = s.window_s > 0 ? rate(totalRate) : "–";
    $("t-errors").textContent = recent > 0 ? percent(failing / recent) : "–";
    const powered = s.telemetry.devices.filter((d) => d.power_w != null);
    $("t-power").textContent = powered.length ? `${number(powered.reduce((sum, d) => sum + d.power_w, 0), 0)} W` : "no telemetry";
    const metered = s.models.filter((m) => m.wh_per_h != null);
    const priced = s.models.filter((m) => m.cost_per_h != null);
    $("t-energy").textContent = !s.energy.metered ? "not metered"
      : metered.length ? energy(metered.reduce((sum, m) => sum + m.wh_per_h, 0)) : "–";
    $("t-cost").textContent = priced.length
      ? money(priced.reduce((sum, m) => sum + m.cost_per_h, 0), s.energy.currency) : s.energy.metered && !s.energy.currency ? "no tariff" : "–";
    $("window").textContent = s.window_s > 0 ? `rates and percentiles over the last ${Math.round(s.window_s)} s` : "";

    $("backends").replaceChildren(...(s.backends.length ? s.backends.map(backendCard) : [el("p", { class: "empty", text: "No backends configured." })]));
    const rows = s.models.map((m) => modelRow(m, s.energy.currency));
    $("models").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, [el("td", { colspan: "12", class: "empty", text: "No models yet." })])]));
    $("devices").replaceChildren(...(s.telemetry.devices.length ? s.telemetry.devices.map(deviceCard)
      : [el("p", { class: "empty", id: "no-telemetry", text: s.telemetry.note || "no telemetry" })]));
    $("errors").replaceChildren(...(s.errors.length ? s.errors.map(errorItem) : [el("li", { class: "empty", text: "No errors since the gateway started." })]));
    $("logout").hidden = !s.auth;
    const updated = $("updated");
    updated.textContent = `updated ${new Date(s.generated_at * 1000).toLocaleTimeString()} · policy ${s.policy}`;
    updated.classList.remove("stale");
    const polls = Number(document.body.dataset.polls || 0) + 1;
    if (polls === 1) document.body.dataset.firstDataMs = performance.now().toFixed(0);
    document.body.dataset.polls = String(polls);
  }

  async function poll() {
    try {
      const reply = await fetch("/ui/status.json", { cache: "no-store", credentials: "same-origin" });
      if (reply.status === 401) { window.location.assign("/ui/login"); return; }
      if (!reply.ok) throw new Error(`status ${reply.status}`);
      draw(await reply.json());
    } catch (error) {
      const updated = $("updated");
      updated.textContent = `gateway unreachable (${error.message}); retrying`;
      updated.classList.add("stale");
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
