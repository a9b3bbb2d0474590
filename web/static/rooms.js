/* The meeting-room list: who is inside each room, kept live from the clinic's socket. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("rooms-config").textContent);
  const strings = config.strings;

  function show(state) {
    const item = document.querySelector(`[data-room="${CSS.escape(state.room)}"]`);
    if (!item) return;
    const names = state.people.map((p) => p.name).join(", ");
    item.querySelector("[data-occupancy]").textContent = state.people.length
      ? `${strings.inUse} ${names}${state.locked ? ` · ${strings.locked}` : ""}`
      : strings.empty;
  }

  function connect() {
    const path = new URL(config.socket, location.href).pathname;
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "room-state") show(message);
    };
    // After a drop the list may be stale: reload it whole once the socket is back.
    ws.onclose = () => setTimeout(() => location.reload(), 2000);
  }
  connect();
})();
