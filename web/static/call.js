/* The browser side of a call: one peer connection to the media node, own audio and video sent,
   five fixed receive slots (audio + video each) so nobody joining needs a renegotiation. */
"use strict";

const VC = (() => {
  const SLOT_COUNT = 5;
  const MAX_VIDEO_BITRATE = 600000; // the media node does no congestion control: cap at source
  const PROTOCOL = 1;

  function readConfig(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }

  /* A socket that reconnects after a drop until closed on purpose. */
  function socketUrl(route) {
    // Flask renders socket routes as ws:// URLs; the page's own scheme decides ws or wss.
    const path = new URL(route, location.href).pathname;
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function openSocket(route, onMessage, onState) {
    const url = socketUrl(route);
    const state = { ws: null, generation: 0, closed: false, retry: 500, outbox: [] };
    function connect() {
      const ws = new WebSocket(url);
      state.ws = ws;
      ws.onopen = () => {
        state.generation += 1;
        state.retry = 500;
        state.outbox.splice(0).forEach((text) => ws.send(text));
        onState("open", state.generation);
      };
      ws.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        onMessage(message, state.generation);
      };
      ws.onclose = () => {
        if (state.closed) return;
        onState("lost", state.generation);
        setTimeout(connect, state.retry);
        state.retry = Math.min(state.retry * 2, 8000);
      };
    }
    connect();
    return {
      /* Sent now, or as soon as the socket (re)opens. */
      send(message) {
        const text = JSON.stringify(Object.assign({ v: PROTOCOL }, message));
        if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(text);
        else state.outbox.push(text);
      },
      close() { state.closed = true; if (state.ws) state.ws.close(); },
      get generation() { return state.generation; },
    };
  }

  const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };

  /* Camera and microphone if possible, else whichever works (a busy camera must not cost the
     patient their voice), else nothing: the call goes on and they still see and hear. */
  async function localMedia(onUnavailable) {
    for (const constraints of [{ audio: true, video: VIDEO }, { audio: true }, { video: VIDEO }]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        if (!constraints.audio || !constraints.video) onUnavailable();
        return stream;
      } catch (error) { /* try the next, smaller request */ }
    }
    onUnavailable();
    return new MediaStream();
  }

  /* Ask the browser for VP8, the room's codec (the media node insists on it anyway). */
  function preferVp8(transceiver) {
    if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
    const vp8 = codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
    try { transceiver.setCodecPreferences(vp8); } catch (e) { /* the node strips the rest */ }
  }

  function waitForGathering(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, timeoutMs);
    });
  }

  class Call {
    constructor(config, localStream, stage) {
      this.config = config;
      this.local = localStream;
      this.remotes = stage.querySelector("[data-remotes]");
      this.pc = null;
      this.slots = [];
      this.offered = null;
      this.onSoundBlocked = () => {};
    }

    /* Offer (again) unless already offered through this socket connection to this node: after
       a dropped socket the node has let go of the old peer connection, and a call moved to
       another node needs a new one. */
    async start(socket, node) {
      const key = `${socket.generation}/${node}`;
      if (this.offered === key) return;
      this.offered = key;
      this.close();
      const pc = new RTCPeerConnection({ iceServers: this.config.iceServers, bundlePolicy: "max-bundle" });
      this.pc = pc;
      const [audio] = this.local.getAudioTracks();
      const [video] = this.local.getVideoTracks();
      pc.addTransceiver(audio || "audio", { direction: "sendonly", streams: [this.local] });
      const own = pc.addTransceiver(video || "video", { direction: "sendonly", streams: [this.local] });
      preferVp8(own);
      this.videoSender = own.sender;
      this.slots = [];
      for (let i = 0; i < SLOT_COUNT; i += 1) {
        const a = pc.addTransceiver("audio", { direction: "recvonly" });
        const v = pc.addTransceiver("video", { direction: "recvonly" });
        preferVp8(v);
        this.slots.push({ stream: new MediaStream([a.receiver.track, v.receiver.track]), participant: null, figure: null });
      }
      // A connection that fails (network change, node restart) is offered again.
      pc.addEventListener("connectionstatechange", () => {
        if (pc === this.pc && pc.connectionState === "failed") {
          this.offered = null;
          setTimeout(() => { if (pc === this.pc) this.start(socket, node); }, 1000);
        }
      });
      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc, 3000);
      socket.send({ type: "offer", sdp: pc.localDescription.sdp });
    }

    async answer(sdp) {
      if (!this.pc) return;
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      const params = this.videoSender.getParameters();
      if (!params.encodings || !params.encodings.length) params.encodings = [{}];
      params.encodings[0].maxBitrate = MAX_VIDEO_BITRATE;
      try { await this.videoSender.setParameters(params); } catch (e) { /* keep the default */ }
    }

    /* Show each remote participant in the slot the node assigned; empty slots disappear. */
    setSlots(assigned) {
      const bySlot = new Map(assigned.map((s) => [s.slot, s]));
      this.slots.forEach((slot, index) => {
        const next = bySlot.get(index);
        if (slot.figure && (!next || next.participant !== slot.participant)) {
          slot.figure.remove();
          slot.figure = null;
          slot.participant = null;
        }
        if (next && !slot.figure) {
          const figure = document.createElement("figure");
          figure.className = "remote";
          const videoEl = document.createElement("video");
          videoEl.autoplay = true;
          videoEl.playsInline = true;
          videoEl.dataset.participant = next.participant;
          videoEl.setAttribute("aria-label", next.name);
          videoEl.srcObject = slot.stream;
          const caption = document.createElement("figcaption");
          caption.textContent = next.name;
          figure.append(videoEl, caption);
          this.remotes.append(figure);
          // Phones may refuse to play sound before a tap: play muted and offer the tap.
          videoEl.play().catch(() => {
            videoEl.muted = true;
            videoEl.play().catch(() => {});
            this.onSoundBlocked(videoEl);
          });
          slot.figure = figure;
          slot.participant = next.participant;
        }
      });
    }

    setMuted(muted) { this.local.getAudioTracks().forEach((t) => { t.enabled = !muted; }); }
    setCameraOff(off) { this.local.getVideoTracks().forEach((t) => { t.enabled = !off; }); }

    close() {
      if (this.pc) { this.pc.close(); this.pc = null; }
      this.slots.forEach((slot) => { if (slot.figure) slot.figure.remove(); });
      this.slots = [];
    }

    stop() {
      this.close();
      this.local.getTracks().forEach((t) => t.stop());
    }
  }

  /* Run a call page: the patient's space or the clinician's call. The page's config names its
     hang-up button ("leave" or "end-call") and what it says when the consultation is over. */
  async function runCallPage() {
    const config = readConfig("call-config");
    const strings = config.strings;
    const status = document.querySelector("[data-status]");
    const hangup = document.querySelector(`[data-action='${config.hangup}']`);
    let socket = null;
    let hangingUp = false;
    let finished = false;
    // Listen before the camera is ready: hanging up must never wait on a device prompt.
    hangup.addEventListener("click", () => {
      hangup.disabled = true;
      hangingUp = true;
      if (socket) socket.send({ type: config.hangup });
    });

    const stage = document.querySelector(".stage");
    const local = await localMedia(() => { status.textContent = strings.noDevices; });
    stage.querySelector("video[data-self]").srcObject = local;
    const call = new Call(config, local, stage);
    window.vidclinicCall = call; // a handle for diagnostics and the browser tests
    const soundButton = document.querySelector("[data-action='sound']");
    call.onSoundBlocked = () => { soundButton.hidden = false; };
    soundButton.addEventListener("click", () => {
      stage.querySelectorAll("video[data-participant]").forEach((el) => { el.muted = false; el.play(); });
      soundButton.hidden = true;
    });
    document.querySelectorAll("[data-controls] button[aria-pressed]").forEach((button) => {
      button.addEventListener("click", () => {
        const pressed = button.getAttribute("aria-pressed") !== "true";
        button.setAttribute("aria-pressed", String(pressed));
        if (button.dataset.action === "mute") call.setMuted(pressed);
        if (button.dataset.action === "camera") call.setCameraOff(pressed);
      });
    });

    function finish() {
      finished = true;
      call.stop();
      socket.close();
      document.querySelectorAll(".stage, .controls").forEach((el) => { el.hidden = true; });
      status.textContent = config.endedText;
      document.querySelectorAll("[data-after-call]").forEach((el) => { el.hidden = false; });
    }

    socket = openSocket(config.socket, (message) => {
      if (finished) return;
      switch (message.type) {
        case "call-started": status.textContent = strings.inCall; break;
        case "media-ready": status.textContent = strings.inCall; call.start(socket, message.node); break;
        case "answer": call.answer(message.sdp); break;
        case "slots": call.setSlots(message.slots); break;
        case "ended": finish(); break;
        case "error":
          if (message.code === "forbidden" || message.code === "not-found") finish();
          else status.textContent = strings.error;
          break;
        default: break;
      }
    }, (state) => {
      if (state === "lost" && !finished) status.textContent = strings.lostConnection;
    });
    if (hangingUp) socket.send({ type: config.hangup });
  }

  return { runCallPage };
})();

VC.runCallPage();
