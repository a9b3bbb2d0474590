/* The waiting-area dashboard: a card per patient, kept live from the clinic's socket (no
   polling), with what a clinic runs its day on: join, resume, message, transfer, remove,
   search and sort, arrival alerts, the estimated wait, and patient links. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const strings = config.strings;
  const list = document.querySelector("[data-waiting-list]");
  const empty = document.querySelector("[data-empty]");
  const alertBox = document.querySelector("[data-alert]");
  const announce = document.querySelector("[data-announce]");
  const count = document.querySelector("[data-count]");
  const estimate = document.querySelector("[data-estimate]");
  const search = document.querySelector("[data-search]");
  const sort = document.querySelector("[data-sort]");
  const template = document.querySelector("template[data-card]");
  const cards = new Map(); // space id → {item, space}
  const LONG_WAIT = 30 * 60;
  let clockOffset = 0; // server time minus browser time, seconds
  let typicalMinutes = 0;
  let socket = null;
  let stopped = false;

  const now = () => Date.now() / 1000 + clockOffset;
  const fill = (text, values) => Object.entries(values).reduce((t, [k, v]) => t.replace(`{${k}}`, v), text);

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      alertBox.textContent = "";
      socket.send(JSON.stringify(Object.assign({ v: 1 }, message)));
    } else {
      alertBox.textContent = strings.lostConnection;
    }
  }

  function statusOf(space) {
    if (space.status === "in-call") return fill(strings.inCall, { name: space.clinician });
    if (space.status === "on-hold") return strings.onHold;
    return strings.waiting;
  }

  /* For a patient whose page is not connected: for how long, and that it is expected back
     if it was connected before (a page never opened is not "reconnecting"). */
  function connection(space) {
    if (space.connected) return "";
    const lost = fill(strings.notConnected, { time: clock(now() - space.disconnected_at) });
    return space.was_connected ? `${strings.reconnecting} · ${lost}` : lost;
  }

  function render(space) {
    let entry = cards.get(space.id);
    if (!entry) {
      const item = template.content.firstElementChild.cloneNode(true);
      item.dataset.space = space.id;
      entry = { item, space };
      cards.set(space.id, entry);
      wire(entry);
      list.append(item);
    }
    entry.space = space;
    const item = entry.item;
    item.querySelector("[data-name]").textContent = space.name;
    const lost = connection(space);
    item.querySelector("[data-card-status]").textContent = lost ? `${statusOf(space)} · ${lost}` : statusOf(space);
    item.classList.toggle("disconnected", Boolean(lost));
    const mine = space.clinician_id === config.me;
    const join = item.querySelector("[data-join]");
    join.setAttribute("aria-label", fill(strings.joinLabel, { name: space.name }));
    // The clinician in the call may rejoin it (a closed tab); nobody else may.
    join.hidden = !(space.status === "waiting" || (space.status === "in-call" && mine));
    const resume = item.querySelector("[data-resume]");
    resume.setAttribute("aria-label", fill(strings.resumeLabel, { name: space.name }));
    resume.hidden = !(space.status === "on-hold" && mine);
    item.querySelector("[data-message]").setAttribute("aria-label", fill(strings.messageLabel, { name: space.name }));
    const transfer = item.querySelector("[data-transfer]");
    if (transfer) transfer.setAttribute("aria-label", fill(strings.transferLabel, { name: space.name }));
    item.querySelector("[data-remove]").setAttribute("aria-label", fill(strings.removeLabel, { name: space.name }));
    const answers = item.querySelector("[data-answers]");
    answers.replaceChildren();
    Object.entries(Object.assign({ phone: space.phone }, space.fields)).forEach(([key, value]) => {
      const term = document.createElement("dt");
      term.textContent = strings.fields[key] || key;
      const detail = document.createElement("dd");
      detail.textContent = value;
      detail.dir = "auto";
      answers.append(term, detail);
    });
    const log = item.querySelector("[data-activity]");
    log.replaceChildren(...space.activity.map((event) => {
      const line = document.createElement("li");
      const at = new Date((event.at - clockOffset) * 1000);
      const what = fill(strings.activity[event.what] || event.what, { by: event.by });
      line.textContent = `${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} ${what}`;
      return line;
    }));
    tick(entry);
    arrange();
  }

  function wire(entry) {
    const item = entry.item;
    const id = () => entry.space.id;
    item.querySelector("[data-join]").addEventListener("click", () => send({ type: "join", space: id() }));
    item.querySelector("[data-resume]").addEventListener("click", () => send({ type: "resume", space: id() }));
    item.querySelector("[data-message]").addEventListener("click", () => openMessage(entry.space));
    const transfer = item.querySelector("[data-transfer]");
    if (transfer) {
      transfer.addEventListener("click", () => {
        send({ type: "transfer", space: id(), clinic: item.querySelector("[data-transfer-to]").value });
      });
    }
    item.querySelector("[data-remove]").addEventListener("click", () => {
      if (window.confirm(fill(strings.removeConfirm, { name: entry.space.name }))) send({ type: "remove", space: id() });
    });
  }

  function remove(spaceId) {
    const entry = cards.get(spaceId);
    if (entry) { entry.item.remove(); cards.delete(spaceId); }
    arrange();
  }

  /* Search, sort, the count in the heading and the estimated wait of a new patient. */
  function arrange() {
    const term = search.value.trim().toLocaleLowerCase();
    const entries = [...cards.values()];
    entries.sort(sort.value === "name"
      ? (a, b) => a.space.name.localeCompare(b.space.name)
      : (a, b) => a.space.entered_at - b.space.entered_at);
    // A card moves only when out of place, and a moved card keeps the focus inside it: moving
    // an element takes the focus off it, and a keyboard user on "Join" would be sent back to
    // the top of the page whenever a patient arrived.
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    entries.forEach(({ item, space }, index) => {
      item.hidden = Boolean(term) && !space.name.toLocaleLowerCase().includes(term);
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
    });
    if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
    const waiting = entries.filter((e) => e.space.status === "waiting").length;
    count.textContent = fill(strings.count, { count: waiting });
    empty.hidden = cards.size > 0;
    if (typicalMinutes > 0) {
      const clinicians = new Set(entries.filter((e) => e.space.status === "in-call").map((e) => e.space.clinician_id)).size;
      const minutes = Math.max(1, Math.ceil(Math.ceil((waiting + 1) / Math.max(1, clinicians)) * typicalMinutes));
      estimate.textContent = fill(strings.estimate, { minutes });
    }
  }

  function tick(entry) {
    const { item, space } = entry;
    const waited = now() - space.entered_at;
    item.querySelector("[data-waited]").textContent = clock(waited);
    const long = waited >= LONG_WAIT && space.status !== "in-call";
    item.classList.toggle("long", long);
    item.querySelector("[data-long-wait]").hidden = !long;
    if (!space.connected) {
      item.querySelector("[data-card-status]").textContent = `${statusOf(space)} · ${connection(space)}`;
    }
  }

  /* An arrival: said to screen readers, a short sound, and a desktop notice if allowed. */
  function alertArrival(space) {
    announce.textContent = fill(strings.arrived, { name: space.name });
    try {
      const audio = new AudioContext();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 660;
      gain.gain.value = 0.1;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound on this device */ }
    if (window.Notification && Notification.permission === "granted" && document.hidden) {
      new Notification(fill(strings.arrivedNotice, { clinic: config.clinic }));
    }
  }

  const notifyButton = document.querySelector("[data-notifications]");
  if (window.Notification && Notification.permission === "default") {
    notifyButton.hidden = false;
    notifyButton.addEventListener("click", () => {
      Notification.requestPermission().finally(() => { notifyButton.hidden = true; });
    });
  }

  /* Dialogs: a message to one patient or to everyone waiting; a pre-filled patient link. */
  const messageDialog = document.querySelector("[data-dialog='message']");
  const messageForm = messageDialog.querySelector("[data-message-form]");
  const messageText = messageForm.querySelector("textarea");
  const messageCount = messageForm.querySelector("[data-message-count]");
  let messageTarget = null;
  /* How much of the 500 characters is used: the box takes no more, and a longer paste is
     seen to stop at the limit rather than cut off unnoticed. */
  function countMessage() {
    messageCount.textContent = fill(strings.messageCount, { count: messageText.value.length, max: config.maxMessage });
  }
  messageText.addEventListener("input", countMessage);
  function openMessage(space) {
    messageTarget = space ? space.id : null;
    messageDialog.querySelector("[data-message-heading]").textContent = space
      ? fill(strings.messageTo, { name: space.name }) : strings.messageAll;
    messageForm.reset();
    countMessage();
    messageDialog.showModal();
  }
  messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = new FormData(messageForm).get("text").trim();
    if (!text) return;
    send(messageTarget ? { type: "send-message", space: messageTarget, text } : { type: "message-all", text });
    messageDialog.close();
  });
  document.querySelector("[data-open='message-all']").addEventListener("click", () => openMessage(null));

  const linkDialog = document.querySelector("[data-dialog='patient-link']");
  const linkForm = linkDialog.querySelector("[data-link-form]");
  const linkMade = linkDialog.querySelector("[data-link-made]");
  const linkAddress = linkDialog.querySelector("[data-link-address]");
  document.querySelector("[data-open='patient-link']").addEventListener("click", () => {
    linkForm.reset();
    linkForm.hidden = false;
    linkMade.hidden = true;
    linkDialog.querySelector("[data-link-errors]").textContent = "";
    linkDialog.showModal();
  });
  linkForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries([...new FormData(linkForm)].filter(([, v]) => String(v).trim()));
    const response = await fetch(config.linkUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrf },
      body: JSON.stringify(values),
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      linkDialog.querySelector("[data-link-errors]").textContent =
        Object.values(data.errors || {}).flat().join(" ");
      return;
    }
    linkAddress.value = data.url;
    linkForm.hidden = true;
    linkMade.hidden = false;
    linkAddress.select();
  });
  linkDialog.querySelector("[data-copy]").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(linkAddress.value); } catch (e) { linkAddress.select(); document.execCommand("copy"); }
    announce.textContent = strings.copied;
  });
  document.querySelectorAll("dialog [data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
  search.addEventListener("input", arrange);
  sort.addEventListener("change", arrange);

  function connect() {
    const path = new URL(config.socket, location.href).pathname;
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "waiting-area":
          clockOffset = message.now - Date.now() / 1000;
          typicalMinutes = message.typical_minutes;
          [...cards.keys()].forEach(remove);
          message.spaces.forEach(render);
          arrange();
          break;
        case "space-changed":
          render(message.space);
          if (message.event === "arrived") alertArrival(message.space);
          break;
        case "space-presence": {
          const entry = cards.get(message.space);
          if (entry) {
            render({
              ...entry.space,
              connected: message.connected,
              disconnected_at: message.disconnected_at,
              was_connected: entry.space.was_connected || message.connected,
            });
          }
          break;
        }
        case "space-left": {
          const entry = cards.get(message.space);
          if (entry) announce.textContent = fill(strings.left, { name: entry.space.name });
          remove(message.space);
          break;
        }
        case "joined": location.assign(message.url); break;
        case "error":
          alertBox.textContent = message.message;
          // Access gone, replaced by a newer tab, or signed out: this page stops here.
          if (["forbidden", "not-found", "replaced", "signed-out"].includes(message.code)) {
            stopped = true;
            [...cards.keys()].forEach(remove);
          }
          break;
        default: break;
      }
    };
    socket.onclose = () => {
      if (stopped) return;
      alertBox.textContent = strings.lostConnection;
      setTimeout(connect, 500 + Math.random() * 1000);
    };
    socket.onopen = () => { if (alertBox.textContent === strings.lostConnection) alertBox.textContent = ""; };
  }
  connect();

  setInterval(() => cards.forEach(tick), 1000);
})();
