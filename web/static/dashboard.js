/* The waiting-area dashboard: cards kept live from the clinic's socket, no polling. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const list = document.querySelector("[data-waiting-list]");
  const empty = document.querySelector("[data-empty]");
  const alertBox = document.querySelector("[data-alert]");
  const announce = document.querySelector("[data-announce]");
  const template = document.querySelector("template[data-card]");
  const cards = new Map();
  let clockOffset = 0; // server time minus browser time, seconds
  // Errors after which the server will not take this page's socket back: no access, signed out,
  // or the dashboard was opened in other windows past the cap. Reconnecting would only fight.
  const FINAL = ["forbidden", "not-found", "replaced", "signed-out"];
  let stopped = false;

  function waited(enteredAt) {
    const seconds = Math.max(0, Math.floor(Date.now() / 1000 + clockOffset - enteredAt));
    const m = Math.floor(seconds / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return `${m}:${s}`;
  }

  function render(space) {
    let item = cards.get(space.id);
    if (!item) {
      item = template.content.firstElementChild.cloneNode(true);
      item.dataset.space = space.id;
      item.querySelector("[data-join]").addEventListener("click", () => {
        alertBox.textContent = "";
        socket.send({ v: 1, type: "join", space: space.id });
      });
      cards.set(space.id, item);
      list.append(item);
    }
    item.dataset.enteredAt = space.entered_at;
    item.querySelector("[data-name]").textContent = space.name;
    item.querySelector("[data-waited]").textContent = waited(space.entered_at);
    const inCall = space.status === "in-call";
    item.querySelector("[data-card-status]").textContent = inCall
      ? config.strings.inCall.replace("{name}", space.clinician) : config.strings.waiting;
    const join = item.querySelector("[data-join]");
    join.setAttribute("aria-label", config.strings.joinLabel.replace("{name}", space.name));
    // The clinician in the call may rejoin it (a closed tab); nobody else may.
    join.hidden = inCall && space.clinician_id !== config.me;
    empty.hidden = cards.size > 0;
  }

  function remove(spaceId) {
    const item = cards.get(spaceId);
    if (item) { item.remove(); cards.delete(spaceId); }
    empty.hidden = cards.size > 0;
  }

  let socket;
  function connect() {
    const path = new URL(config.socket, location.href).pathname;
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "waiting-area":
          clockOffset = message.now - Date.now() / 1000;
          [...cards.keys()].forEach(remove);
          message.spaces.forEach(render);
          break;
        case "space-changed":
          render(message.space);
          if (message.event === "arrived") {
            announce.textContent = config.strings.arrived.replace("{name}", message.space.name);
          }
          break;
        case "space-left": remove(message.space); break;
        case "joined": location.assign(message.url); break;
        case "error":
          alertBox.textContent = message.message;
          if (FINAL.includes(message.code)) {
            // Nothing of the waiting area stays on a page that may no longer see it.
            stopped = true;
            [...cards.keys()].forEach(remove);
          }
          break;
        default: break;
      }
    };
    socket.onclose = () => {
      if (stopped) return;
      alertBox.textContent = config.strings.lostConnection;
      setTimeout(connect, 1000);
    };
    socket.onopen = () => { if (alertBox.textContent === config.strings.lostConnection) alertBox.textContent = ""; };
    const send = socket.send.bind(socket);
    socket.send = (message) => {
      if (socket.readyState === WebSocket.OPEN) send(JSON.stringify(message));
      else alertBox.textContent = config.strings.lostConnection;
    };
  }
  connect();

  setInterval(() => {
    cards.forEach((item) => {
      item.querySelector("[data-waited]").textContent = waited(Number(item.dataset.enteredAt));
    });
  }, 1000);
})();
