// Hookwire's web console: live events, hooks and their deliveries, dead letters.
//
// Rules this file keeps (docs/console.md):
// - Whatever comes from the API (event names and data, headers, answers, errors) is put in
//   the page as text (Node.append / textContent), never parsed as HTML.
// - The token lives in sessionStorage (this tab only) and travels in the Authorization
//   header, never in a URL, and is never logged.
// - No inline script or style: the page's Content-Security-Policy forbids both.
"use strict";

(() => {
  const TOKEN_KEY = "hookwire-token";
  const MAX_EVENTS = 500; // rows kept in the live view; older ones are dropped
  const RECONNECT_MS = 3000; // as EventSource's default; a stream's "retry:" changes it
  const FOLLOW_MS = 1000; // how often a replayed delivery is looked at again...
  const FOLLOW_FOR_MS = 20000; // ...and for how long
  const HOURS = 30 * 24; // the chart's hours, as the API keeps them
  const HOUR_MS = 3600 * 1000;

  const $ = (id) => document.getElementById(id);

  // A new element; string children become text nodes, never markup.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const text = (value) => (value === null || value === undefined ? "" : String(value));
  const time = (iso) => (iso ? text(iso).replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const checked = (node) => [...node.querySelectorAll("input:checked")].map((box) => box.value);
  const headerLines = (headers) => headers.map(([name, value]) => `${name}: ${value}`);

  function notify(message, kind) {
    const notice = $("notice");
    notice.textContent = message;
    notice.className = kind || "";
    notice.hidden = !message;
  }

  function setState(id, message, kind) {
    const node = $(id);
    node.textContent = message;
    node.className = `state ${kind || ""}`;
  }

  // The API

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the daemon cannot be reached (${err.message})`);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) {
      const why = (answer && (answer.error_description || answer.error)) || response.statusText;
      if (response.status === 401) notify(`The token was refused: ${why}`, "bad");
      throw new ApiError(response.status, `${response.status}: ${why}`);
    }
    return answer;
  }

  // Token

  async function useToken(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      await api("GET", "/v1/integrations");
    } catch (err) {
      if (err.status === 401 || err.status === 0) {
        sessionStorage.removeItem(TOKEN_KEY);
        notify(`Token not used: ${err.message}`, "bad");
        return;
      }
      // 403: a token without the hooks scope still streams events.
    }
    notify("");
    showSession(true);
    watch($("prefix").value.trim());
    loadHooks();
    loadDeadLetters();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    stopStream();
    setState("live-state", "not connected");
    for (const id of ["events", "hook-list", "dead-letters", "deliveries"]) {
      $(id).tBodies[0].replaceChildren();
    }
    $("hook").hidden = true;
    $("delivery").hidden = true;
    showSession(false);
  }

  function showSession(on) {
    $("login").hidden = on;
    $("session").hidden = !on;
    $("tabs").hidden = !on;
    $("main").hidden = !on;
    if (!on) $("token").focus();
  }

  function showTab(name) {
    for (const button of $("tabs").querySelectorAll("button")) {
      button.classList.toggle("selected", button.dataset.tab === name);
    }
    for (const section of document.querySelectorAll("section.tab")) {
      section.hidden = section.id !== name;
    }
    $("delivery").hidden = true;
  }

  // Live events: a fetch-read stream rather than EventSource, which hands a page only the
  // event names it listens for by name; this one shows every name under the prefix. It
  // reconnects by itself and resumes with Last-Event-ID, as EventSource would.

  const live = { generation: 0, controller: null, lastId: "", prefix: "", paused: false };

  function streamPath(prefix) {
    const encoded = prefix.split("/").map(encodeURIComponent).join("/");
    return `/v1/devices/events/${encoded}`;
  }

  function watch(prefix) {
    stopStream();
    live.prefix = prefix;
    live.lastId = "";
    live.paused = false;
    $("pause").textContent = "Pause";
    runStream(++live.generation);
  }

  function stopStream() {
    live.generation += 1;
    if (live.controller) live.controller.abort();
    live.controller = null;
  }

  function togglePause() {
    if (!token()) return;
    live.paused = !live.paused;
    $("pause").textContent = live.paused ? "Resume" : "Pause";
    if (live.paused) {
      stopStream();
      const after = live.lastId ? ` after event ${live.lastId}` : "";
      setState("live-state", `paused: Resume shows what came${after}`, "warn");
    } else {
      runStream(++live.generation);
    }
  }

  async function runStream(generation) {
    const current = () => generation === live.generation;
    let retry = RECONNECT_MS;
    while (current()) {
      const controller = new AbortController();
      live.controller = controller;
      const headers = { Authorization: `Bearer ${token()}` };
      if (live.lastId) headers["Last-Event-ID"] = live.lastId;
      setState("live-state", live.lastId ? `resuming after event ${live.lastId}` : "connecting");
      try {
        const response = await fetch(streamPath(live.prefix), {
          headers,
          cache: "no-store",
          signal: controller.signal,
        });
        if (!response.ok) {
          let why = response.statusText;
          try {
            why = (await response.json()).error_description || why;
          } catch {
            // not JSON: the status says enough
          }
          if (response.status < 500) {
            setState("live-state", `refused: ${response.status}: ${why}`, "bad");
            return;
          }
          throw new Error(`${response.status}: ${why}`);
        }
        const watching = live.prefix ? `events starting with "${live.prefix}"` : "every event";
        setState("live-state", `live: ${watching}`, "ok");
        await readFrames(response.body, (frame) => {
          if (!current()) return;
          if (frame.retry !== null) retry = frame.retry;
          if (frame.id !== null) live.lastId = frame.id;
          if (frame.data !== null) showEvent(frame);
        });
        if (!current()) return;
        setState("live-state", `the stream ended; reconnecting in ${retry / 1000} s`, "warn");
      } catch (err) {
        if (!current()) return;
        const why = `disconnected (${err.message}); reconnecting in ${retry / 1000} s`;
        setState("live-state", why, "warn");
      }
      await sleep(retry);
    }
  }

  // Server-Sent Events framing (the HTML standard's rules): calls onFrame with each event's
  // name, id, data and retry, once its blank line has come.
  async function readFrames(body, onFrame) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    let frame = { event: "message", id: null, data: null, retry: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const lines = (rest + value).split("\n");
      rest = lines.pop();
      for (let line of lines) {
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (frame.data !== null || frame.retry !== null) onFrame(frame);
          frame = { event: "message", id: null, data: null, retry: null };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: :ok, :keepalive, lost events
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") frame.event = value;
        else if (field === "data") frame.data = frame.data === null ? value : `${frame.data}\n${value}`;
        else if (field === "id") frame.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) frame.retry = Number(value);
      }
    }
  }

  function showEvent(frame) {
    let fields = {};
    try {
      fields = JSON.parse(frame.data);
    } catch {
      fields = { data: frame.data };
    }
    const product = fields.productID ? ` (product ${fields.productID})` : "";
    const device = text(fields.coreid) + product;
    const row = el(
      "tr",
      {},
      el("td", { class: "num" }, text(frame.id)),
      el("td", { class: "time" }, time(fields.published_at)),
      el("td", { class: "name" }, frame.event),
      el("td", {}, device),
      el("td", { class: "data" }, text(fields.data)),
    );
    const rows = $("events").tBodies[0];
    rows.prepend(row);
    while (rows.rows.length > MAX_EVENTS) rows.lastElementChild.remove();
    $("events-empty").hidden = true;
  }

  // Hooks

  const hooks = { list: [], selected: null, cursor: null, confirmDelete: null };

  async function loadHooks() {
    setState("hooks-state", "loading…");
    try {
      hooks.list = await api("GET", "/v1/integrations");
    } catch (err) {
      setState("hooks-state", err.message, "bad");
      return;
    }
    setState("hooks-state", count(hooks.list.length, "hook", "hooks"));
    const rows = hooks.list.map((hook) => {
      const c = hook.counters || {};
      const failure = c.last_failed_at ? `${time(c.last_failed_at)} (${text(c.last_failure)})` : "";
      return el(
        "tr",
        {
          class: hook.id === hooks.selected ? "selectable selected" : "selectable",
          onclick: () => selectHook(hook.id),
        },
        el("td", { class: "name" }, hook.name),
        el("td", {}, text(hook.event)),
        el("td", { class: "url" }, text(hook.url)),
        el("td", {}, text(hook.source)),
        el("td", { class: hook.enabled ? "ok" : "bad" }, hookStatus(hook)),
        el("td", { class: "num" }, text(c.delivered)),
        el("td", { class: "num" }, text(c.dead)),
        el("td", { class: failure ? "bad" : "" }, failure),
      );
    });
    $("hook-list").tBodies[0].replaceChildren(...rows);
    if (hooks.selected && !hooks.list.some((hook) => hook.id === hooks.selected)) {
      hooks.selected = null;
      $("hook").hidden = true;
    }
  }

  const hookStatus = (hook) => (hook.enabled ? "enabled" : `disabled: ${text(hook.disabled_reason)}`);

  async function selectHook(id) {
    hooks.selected = id;
    hooks.confirmDelete = null;
    for (const row of $("hook-list").tBodies[0].rows) row.classList.remove("selected");
    const index = hooks.list.findIndex((hook) => hook.id === id);
    if (index >= 0) $("hook-list").tBodies[0].rows[index].classList.add("selected");
    $("test-result").replaceChildren();
    $("hook").hidden = false;
    await showHook();
  }

  async function showHook() {
    const id = hooks.selected;
    if (!id) return;
    setState("hook-state", "loading…");
    let hook;
    let activity;
    try {
      [hook, activity] = await Promise.all([
        api("GET", `/v1/integrations/${encodeURIComponent(id)}`),
        api("GET", `/v1/integrations/${encodeURIComponent(id)}/activity`),
      ]);
    } catch (err) {
      setState("hook-state", err.message, "bad");
      return;
    }
    if (id !== hooks.selected) return;
    setState("hook-state", "");
    $("hook-title").textContent = hook.name;
    const source = hook.source === "config" ? "the config file" : "the API";
    $("hook-meta").textContent = [
      `${text(hook.requestType)} ${text(hook.url)}`,
      `events starting with "${text(hook.event)}"`,
      hookStatus(hook),
      `from ${source}`,
      `created ${time(hook.created_at)}`,
    ].join(" · ");
    const deletable = hook.source === "api";
    $("hook-delete").disabled = !deletable;
    $("hook-delete").textContent = "Delete";
    $("hook-delete").title = deletable ? "" : "a hook of the config file: change it there, and reload";
    $("failures").replaceChildren(...attemptList(activity.last_failures, "No failure kept."));
    $("successes").replaceChildren(...attemptList(activity.last_successes, "No success kept."));
    drawChart(activity.hours);
    await loadDeliveries(false);
  }

  function attemptList(attempts, none) {
    if (!attempts.length) return [el("p", { class: "empty" }, none)];
    return attempts.map((attempt, i) => attemptView(attempt, i === 0));
  }

  // One attempt: what it sent (request line and headers, secrets masked by the daemon) and
  // what came back (the status or the error, the start of the answer).
  function attemptView(attempt, open) {
    const outcome = attempt.status !== null ? `status ${attempt.status}` : "no answer";
    const result = attempt.error || "delivered";
    const summary = el(
      "summary",
      {},
      el("span", { class: "time" }, time(attempt.at)),
      ` attempt ${attempt.number} · ${outcome} · `,
      el("span", { class: attempt.error ? "bad" : "ok" }, result),
      ` · ${attempt.duration_ms} ms`,
      attempt.next_try ? ` · next try ${time(attempt.next_try)} UTC` : null,
    );
    const sent = attempt.request;
    const request = sent ? [`${sent.method} ${sent.url}`, ...headerLines(sent.headers)].join("\n") : "(not kept)";
    const details = el(
      "details",
      { class: attempt.error ? "attempt failed" : "attempt" },
      summary,
      el(
        "p",
        { class: "meta" },
        "delivery ",
        deliveryLink(attempt.delivery),
        ` · event ${attempt.event_id} · then ${text(attempt.state)}`,
      ),
      el("h4", {}, "Request"),
      el("pre", { class: "request" }, request),
      el("h4", {}, "Answer (first 1 KB)"),
      el("pre", { class: "answer" }, attempt.response || "(empty)"),
    );
    details.open = Boolean(open);
    return details;
  }

  const eventLabel = (id, name) => el("span", {}, `#${id} `, el("span", { class: "name" }, text(name)));

  function deliveryLink(id) {
    return el("button", { type: "button", class: "link", onclick: () => showDelivery(id) }, id);
  }

  // Attempts per hour: one column per hour, delivered below and failed above.
  function drawChart(hours) {
    const canvas = $("chart");
    const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
    const start = end - (HOURS - 1) * HOUR_MS;
    const counts = new Map(hours.map((hour) => [Date.parse(hour.hour), hour]));
    let highest = 1;
    let delivered = 0;
    let failed = 0;
    for (const hour of hours) {
      highest = Math.max(highest, hour.delivered + hour.failed);
      delivered += hour.delivered;
      failed += hour.failed;
    }
    const style = getComputedStyle(canvas);
    const width = canvas.clientWidth || HOURS;
    const height = canvas.clientHeight || 120;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const column = width / HOURS;
    g.fillStyle = style.getPropertyValue("--grid").trim() || "#ddd";
    for (let day = 0; day <= 30; day += 1) g.fillRect(Math.floor(day * 24 * column), 0, 1, height);
    for (let i = 0; i < HOURS; i += 1) {
      const hour = counts.get(start + i * HOUR_MS);
      if (!hour) continue;
      const ok = (hour.delivered / highest) * (height - 4);
      const bad = (hour.failed / highest) * (height - 4);
      const x = i * column;
      const w = Math.max(column, 2);
      g.fillStyle = style.getPropertyValue("--ok").trim() || "green";
      g.fillRect(x, height - ok, w, ok);
      g.fillStyle = style.getPropertyValue("--bad").trim() || "red";
      g.fillRect(x, height - ok - bad, w, bad);
    }
    const busiest = hours.length ? highest : 0;
    const summary = `${delivered} delivered and ${failed} failed attempts in 30 days; the busiest hour had ${busiest}.`;
    $("chart-caption").textContent = summary;
    canvas.onmousemove = (e) => {
      const i = Math.min(HOURS - 1, Math.max(0, Math.floor((e.offsetX / width) * HOURS)));
      const at = start + i * HOUR_MS;
      const hour = counts.get(at) || { delivered: 0, failed: 0 };
      const label = new Date(at).toISOString().slice(0, 13).replace("T", " ");
      const counts = `${hour.delivered} delivered, ${hour.failed} failed`;
      $("chart-caption").textContent = `${label}:00 UTC: ${counts}`;
    };
    canvas.onmouseleave = () => {
      $("chart-caption").textContent = summary;
    };
  }

  async function loadDeliveries(more) {
    const id = hooks.selected;
    const states = checked($("delivery-filter"));
    const rows = $("deliveries").tBodies[0];
    if (!more) {
      hooks.cursor = null;
      rows.replaceChildren();
    }
    if (!states.length) {
      $("deliveries-more").hidden = true;
      return;
    }
    const query = new URLSearchParams({ state: states.join(","), limit: "20" });
    if (more && hooks.cursor) query.set("cursor", hooks.cursor);
    let page;
    try {
      page = await api("GET", `/v1/integrations/${encodeURIComponent(id)}/deliveries?${query}`);
    } catch (err) {
      setState("hook-state", err.message, "bad");
      return;
    }
    if (id !== hooks.selected) return;
    for (const delivery of page.deliveries) {
      rows.append(
        el(
          "tr",
          {},
          el("td", {}, deliveryLink(delivery.id)),
          el("td", {}, eventLabel(delivery.event_id, delivery.event)),
          el("td", { class: `st-${delivery.state}` }, delivery.state),
          el("td", { class: "num" }, text(delivery.attempts)),
          el("td", { class: "time" }, time(delivery.at)),
          el("td", {}, text(delivery.last_result)),
          el("td", { class: "time" }, time(delivery.next_try)),
        ),
      );
    }
    hooks.cursor = page.next_cursor;
    $("deliveries-more").hidden = !page.next_cursor;
  }

  async function testHook() {
    const id = hooks.selected;
    setState("hook-state", "sending a test event…");
    let answer;
    try {
      answer = await api("POST", `/v1/integrations/${encodeURIComponent(id)}/test`, {});
    } catch (err) {
      setState("hook-state", err.message, "bad");
      return;
    }
    setState("hook-state", "");
    const sent = answer.request;
    const lines = [`${sent.method} ${sent.url}`, ...headerLines(sent.headers)];
    if (sent.body) lines.push("", sent.body);
    const parts = [
      el("h4", {}, "Test request sent"),
      el("pre", { class: "request" }, lines.join("\n")),
    ];
    if (answer.answered) {
      const got = answer.response;
      const head = [`status ${got.status} in ${got.seconds} s`, ...headerLines(got.headers)];
      parts.push(
        el("h4", { class: got.status < 300 ? "ok" : "bad" }, `Answered ${got.status}`),
        el("pre", { class: "answer" }, `${head.join("\n")}\n\n${text(got.body)}`),
      );
    } else {
      parts.push(
        el("h4", { class: "bad" }, "No answer"),
        el("pre", { class: "answer" }, text(answer.error)),
      );
    }
    $("test-result").replaceChildren(el("div", { class: "test" }, ...parts));
  }

  async function deleteHook() {
    const id = hooks.selected;
    const hook = hooks.list.find((h) => h.id === id);
    if (hooks.confirmDelete !== id) {
      // Asked twice, without a dialog: a second click within 5 s deletes.
      hooks.confirmDelete = id;
      $("hook-delete").textContent = `Really delete ${hook ? hook.name : id}?`;
      setTimeout(() => {
        if (hooks.confirmDelete === id) {
          hooks.confirmDelete = null;
          $("hook-delete").textContent = "Delete";
        }
      }, 5000);
      return;
    }
    hooks.confirmDelete = null;
    setState("hook-state", "deleting… (once its queued deliveries are dead letters)");
    try {
      await api("DELETE", `/v1/integrations/${encodeURIComponent(id)}`);
    } catch (err) {
      setState("hook-state", err.message, "bad");
      return;
    }
    hooks.selected = null;
    $("hook").hidden = true;
    await loadHooks();
    setState("hooks-state", `deleted ${hook ? hook.name : id}`, "ok");
  }

  async function createHook(documentText) {
    setState("create-state", "creating…");
    let created;
    try {
      created = await api("POST", "/v1/integrations", documentText);
    } catch (err) {
      setState("create-state", err.message, "bad");
      return;
    }
    setState("create-state", `created ${created.name} (${created.id})`, "ok");
    $("create-doc").value = "";
    await loadHooks();
    await selectHook(created.id);
  }

  // One delivery and every attempt

  async function showDelivery(id) {
    let delivery;
    try {
      delivery = await api("GET", `/v1/deliveries/${encodeURIComponent(id)}`);
    } catch (err) {
      notify(`Delivery ${id}: ${err.message}`, "bad");
      return;
    }
    const event = delivery.event;
    $("delivery-title").textContent = `Delivery ${delivery.id}`;
    const next = delivery.next_try ? ` · next try ${time(delivery.next_try)} UTC` : "";
    const tries = count(delivery.attempts, "attempt", "attempts");
    $("delivery-meta").textContent = `hook ${delivery.hook} · ${delivery.state} · ${tries}${next}`;
    const product = event.product !== null ? ` product ${event.product}` : "";
    const from = `from ${event.device}${product} at ${time(event.published_at)} UTC`;
    $("delivery-event").textContent = `event #${event.id} ${event.name} ${from}\n${text(event.data)}`;
    $("delivery-attempts").replaceChildren(...attemptList(delivery.attempt_log, "Not tried yet."));
    for (const details of $("delivery-attempts").querySelectorAll("details")) details.open = true;
    $("delivery").hidden = false;
    $("delivery").scrollIntoView({ block: "start" });
  }

  // Dead letters

  async function loadDeadLetters() {
    setState("dead-state", "loading…");
    let answer;
    try {
      answer = await api("GET", "/v1/dead-letters?limit=200");
    } catch (err) {
      setState("dead-state", err.message, "bad");
      return;
    }
    const letters = answer.dead_letters;
    const shown = count(letters.length, "dead letter", "dead letters");
    setState("dead-state", letters.length ? `${shown}, newest first` : "no dead letter");
    $("dead-all").checked = false;
    const rows = letters.map((letter) =>
      el(
        "tr",
        {},
        el("td", {}, el("input", { type: "checkbox", value: letter.id, title: "select" })),
        el("td", {}, deliveryLink(letter.id)),
        el("td", {}, text(letter.hook)),
        el("td", {}, eventLabel(letter.event_id, letter.event)),
        el("td", {}, text(letter.device)),
        el("td", { class: "time" }, time(letter.at)),
        el("td", { class: "num" }, text(letter.attempts)),
        el("td", { class: "bad" }, text(letter.reason)),
      ),
    );
    $("dead-letters").tBodies[0].replaceChildren(...rows);
  }

  async function replaySelected() {
    const ids = checked($("dead-letters").tBodies[0]);
    if (!ids.length) {
      setState("dead-state", "select the dead letters to replay first", "warn");
      return;
    }
    let answer;
    try {
      answer = await api("POST", "/v1/dead-letters/replay", { ids });
    } catch (err) {
      setState("dead-state", err.message, "bad");
      return;
    }
    const gone = answer.missing.join(", ");
    const missing = gone ? `; not dead letters (any more): ${gone}` : "";
    setState("dead-state", `queued ${answer.queued} again${missing}`, "ok");
    await loadDeadLetters();
    for (const id of answer.ids) followReplay(id);
  }

  // A replayed delivery, looked at every second until it is delivered or dead again.
  async function followReplay(id) {
    const status = el("span", { class: "state" }, "queued");
    $("replayed").prepend(el("li", {}, "replayed ", deliveryLink(id), ": ", status));
    const until = Date.now() + FOLLOW_FOR_MS;
    while (Date.now() < until) {
      await sleep(FOLLOW_MS);
      let delivery;
      try {
        delivery = await api("GET", `/v1/deliveries/${encodeURIComponent(id)}`);
      } catch (err) {
        status.textContent = err.message;
        status.className = "state bad";
        return;
      }
      const last = delivery.attempt_log[delivery.attempt_log.length - 1];
      const why = delivery.state !== "delivered" && last && last.error ? ` (${last.error})` : "";
      status.textContent = delivery.state + why;
      status.className = `state st-${delivery.state}`;
      if (delivery.state === "delivered" || delivery.state === "dead") {
        if (delivery.state === "dead") loadDeadLetters();
        return;
      }
    }
  }

  // Wiring

  function start() {
    $("login").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (value) useToken(value);
    });
    $("logout").addEventListener("click", forgetToken);
    for (const button of $("tabs").querySelectorAll("button")) {
      button.addEventListener("click", () => {
        showTab(button.dataset.tab);
        if (button.dataset.tab === "hooks") loadHooks();
        if (button.dataset.tab === "dead") loadDeadLetters();
      });
    }
    $("live-form").addEventListener("submit", (e) => {
      e.preventDefault();
      $("events").tBodies[0].replaceChildren();
      $("events-empty").hidden = false;
      watch($("prefix").value.trim());
    });
    $("pause").addEventListener("click", togglePause);
    $("clear").addEventListener("click", () => {
      $("events").tBodies[0].replaceChildren();
      $("events-empty").hidden = false;
    });
    $("hooks-refresh").addEventListener("click", loadHooks);
    $("hook-refresh").addEventListener("click", () => {
      loadHooks();
      showHook();
    });
    $("hook-test").addEventListener("click", testHook);
    $("hook-delete").addEventListener("click", deleteHook);
    $("create-form").addEventListener("submit", (e) => {
      e.preventDefault();
      createHook($("create-doc").value);
    });
    $("delivery-filter").addEventListener("change", () => loadDeliveries(false));
    $("deliveries-more").addEventListener("click", () => loadDeliveries(true));
    $("dead-refresh").addEventListener("click", loadDeadLetters);
    $("replay").addEventListener("click", replaySelected);
    $("dead-all").addEventListener("change", () => {
      for (const box of $("dead-letters").tBodies[0].querySelectorAll("input[type=checkbox]")) {
        box.checked = $("dead-all").checked;
      }
    });
    $("delivery-close").addEventListener("click", () => {
      $("delivery").hidden = true;
    });
    if (token()) useToken(token());
    else showSession(false);
  }

  start();
})();
