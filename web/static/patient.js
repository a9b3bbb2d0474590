/* The patient's space: self-view while waiting; the call once a clinician joins. */
"use strict";

(async () => {
  const status = document.querySelector("[data-status]");
  const leave = document.querySelector("[data-action='leave']");
  let socket = null;
  let leaving = false;
  // Listen before the camera is ready: leaving must never wait on a device prompt.
  leave.addEventListener("click", () => {
    leave.disabled = true;
    leaving = true;
    if (socket) socket.send({ type: "leave" });
  });

  const { config, call } = await VC.setUp((strings) => { status.textContent = strings.noDevices; });
  const strings = config.strings;
  let finished = false;

  function finish(text) {
    finished = true;
    call.stop();
    socket.close();
    document.querySelectorAll(".stage, .controls").forEach((el) => { el.hidden = true; });
    status.textContent = text;
  }

  socket = VC.openSocket(config.socket, (message) => {
    if (finished) return;
    switch (message.type) {
      case "call-started": status.textContent = strings.inCall; break;
      case "media-ready": call.start(socket); break;
      case "answer": call.answer(message.sdp); break;
      case "slots": call.setSlots(message.slots); break;
      case "ended": finish(strings.ended); break;
      case "error":
        if (message.code === "forbidden") finish(strings.ended);
        break;
      default: break;
    }
  }, (state) => {
    if (state === "lost" && !finished) status.textContent = strings.lostConnection;
  });
  if (leaving) socket.send({ type: "leave" });
})();
