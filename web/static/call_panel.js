/* The clinician's call page: the patients in this call ("Hold", "Resume", "Transfer") and the
   clinic's waiting patients ("Add", to the call), kept live from the call's socket. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("call-panel-config").textContent);
  const strings = config.strings;
  const inCall = document.querySelector("[data-in-call]");
  const waiting = document.querySelector("[data-waiting]");
  const nobody = document.querySelector("[data-nobody-waiting]");
  const cards = new Map();
  const fill = (text, name) => text.replace("{name}", name);
  const send = (message) => window.vidclinicSocket.send(message);

  // Each control says what it is for ("hold:<space>"): the lists are drawn anew on every
  // change, and a keyboard user's focus moves to the new control for the same thing.
  function button(label, accessible, onClick, key) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.setAttribute("aria-label", accessible);
    b.dataset.focusKey = key;
    b.addEventListener("click", onClick);
    return b;
  }

  function transferControls(space) {
    if (!config.transferTo.length) return [];
    const select = document.createElement("select");
    select.setAttribute("aria-label", fill(strings.transferTo, space.name));
    select.dataset.focusKey = `transfer-to:${space.id}`;
    config.transferTo.forEach((clinic) => {
      const option = document.createElement("option");
      option.value = clinic.slug;
      option.textContent = clinic.name;
      select.append(option);
    });
    return [select, button(strings.transfer, fill(strings.transferLabel, space.name), () => {
      send({ type: "transfer", space: space.id, clinic: select.value });
    }, `transfer:${space.id}`)];
  }

  function render() {
    const focused = document.activeElement;
    const focusKey = inCall.contains(focused) || waiting.contains(focused) ? focused.dataset.focusKey : null;
    const here = [];
    const there = [];
    [...cards.values()].sort((a, b) => a.entered_at - b.entered_at).forEach((space) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = space.name;
      name.dir = "auto";
      item.append(name);
      if (space.call === config.call && space.clinician_id === config.me) {
        if (space.status === "on-hold") {
          item.append(` (${strings.onHold}) `, button(strings.resume, fill(strings.resumeLabel, space.name), () => send({ type: "resume", space: space.id }), `resume:${space.id}`));
        } else {
          item.append(" ", button(strings.hold, fill(strings.holdLabel, space.name), () => send({ type: "hold", space: space.id }), `hold:${space.id}`));
        }
        item.append(" ", ...transferControls(space));
        here.push(item);
      } else if (space.status === "waiting") {
        item.append(" ", button(strings.add, fill(strings.addLabel, space.name), () => send({ type: "add-to-call", space: space.id }), `add:${space.id}`));
        there.push(item);
      }
    });
    inCall.replaceChildren(...here);
    waiting.replaceChildren(...there);
    nobody.hidden = there.length > 0;
    if (focusKey) {
      const again = [...document.querySelectorAll("[data-focus-key]")].find((el) => el.dataset.focusKey === focusKey);
      if (again) again.focus();
    }
  }

  document.addEventListener("vidclinic:message", (event) => {
    const message = event.detail;
    if (message.type === "waiting-area") {
      cards.clear();
      message.spaces.forEach((space) => cards.set(space.id, space));
    } else if (message.type === "space-changed") {
      cards.set(message.space.id, message.space);
    } else if (message.type === "space-left") {
      cards.delete(message.space);
    } else {
      return;
    }
    render();
  });
})();
