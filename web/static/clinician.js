/* The clinician's call page. */
"use strict";

(async () => {
  const status = document.querySelector("[data-status]");
  const endButton = document.querySelector("[data-action='end-call']");
  let socket = null;
  let ending = false;
  // Listen before the camera is ready: ending must never wait on a device prompt.
  endButton.addEventListener("click", () => {
    endButton.disabled = true;
    ending = true;
    if (socket) socket.send({ type: "end-call" });
  });

  const { config, call } = await VC.setUp((strings) => { status.textContent = strings.noDevices; });
  const strings = config.strings;
  let finished = false;

  function finish() {
    finished = true;
    call.stop();
    socket.close();
    document.querySelectorAll(".stage, .controls").forEach((el) => { el.hidden = true; });
    status.textContent = strings.endedClinician;
    document.querySelector("[data-after-call]").hidden = false;
  }

  socket = VC.openSocket(config.socket, (message) => {
    if (finished) return;
    switch (message.type) {
      case "media-ready": status.textContent = strings.inCall; call.start(socket); break;
      case "answer": call.answer(message.sdp); break;
      case "slots": call.setSlots(message.slots); break;
      case "ended": finish(); break;
      case "error":
        if (message.code === "forbidden" || message.code === "not-found") finish();
        else status.textContent = message.message;
        break;
      default: break;
    }
  }, (state) => {
    if (state === "lost" && !finished) status.textContent = strings.lostConnection;
  });
  if (ending) socket.send({ type: "end-call" });
})();
