/* The browser side of a call: one peer connection to the media node, own audio and video sent,
   five fixed receive slots (audio + video each) so nobody joining needs a renegotiation. */
"use strict";

const VC = (() => {
  const SLOT_COUNT = 5;
  const TRANSFER_NOTICE_MS = 3000; // "You are being transferred." is shown at least this long
  // Refusals whose sentence from the server the page shows as it is.
  const TOLD_AS_IS = ["call-full", "already-being-seen", "space-not-found", "not-your-clinic"];
  // Connections that fail one after another (about 10 s each) before the page gives up.
  const FAILED_ATTEMPTS = 4;
  // The camera's cap at most (the node may ask for less: it does no congestion control).
  const MAX_VIDEO_BITRATE = 600000;
  const PROTOCOL = 1;
  // Messages a media node sends about a participant's connection: each names its node.
  const FROM_NODE = ["answer", "slots", "bitrate", "speaker"];

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
        // Jittered: after a network blip every page of a clinic reconnects, not all at once.
        setTimeout(connect, state.retry * (0.5 + Math.random()));
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

  /* Calls `onFrame` once, when the element presents its first video frame. */
  function onFirstFrame(videoEl, onFrame) {
    if (videoEl.requestVideoFrameCallback) {
      videoEl.requestVideoFrameCallback(() => onFrame());
    } else {
      videoEl.addEventListener("resize", () => onFrame(), { once: true });
    }
  }

  class Call {
    constructor(config, stage) {
      this.config = config;
      // One stream for the whole page: the camera and microphone join it when the browser
      // grants them, which may be after the call has started.
      this.local = new MediaStream();
      this.remotes = stage.querySelector("[data-remotes]");
      this.pc = null;
      // The media node the current peer connection is to, and its ICE username fragment (a
      // page whose socket reconnects names it to keep the connection).
      this.node = null;
      this.ufrag = "";
      // Whether a peer connection of this page was ever connected: losing one after that is
      // "Reconnecting…", not the first "Connecting…".
      this.everConnected = false;
      // Told "connected" or "reconnecting" as the media path comes and goes.
      this.onMediaState = () => {};
      this.next = null;
      this.senders = {};
      this.slots = [];
      this.offered = null;
      this.onSoundBlocked = () => {};
      // Called when connections kept failing past FAILED_ATTEMPTS: the page says so.
      this.onGaveUp = () => {};
      this.failures = 0;
      // What the camera is capped at: the node does no congestion control of its own, so the
      // source sends no more than the weakest subscriber takes.
      this.videoCap = MAX_VIDEO_BITRATE;
      this.speaker = "";
      this.muted = false;
      this.cameraOff = false;
      // When each step of the call's start happened (Date.now()): for diagnostics and the
      // call-start benchmark. Only the first occurrence of a step is kept.
      this.timeline = {};
    }

    mark(step) {
      if (!(step in this.timeline)) this.timeline[step] = Date.now();
    }

    /* The camera and microphone are ready: send them on the current connection at once. */
    useLocalMedia(stream) {
      stream.getTracks().forEach((track) => {
        this.local.addTrack(track);
        [this.senders, this.next && this.next.senders].forEach((senders) => {
          const sender = senders && senders[track.kind];
          if (sender) sender.replaceTrack(track).catch(() => {});
        });
      });
      this.applyToggles();
      this.mark("local-media");
    }

    /* A peer connection with every transceiver and its offer, made ahead of need: Chromium
       spends about 100 ms on a page's first connection, which would otherwise delay the start.
       Nothing is gathered or sent until the offer is used. */
    prepare() {
      if (this.next) return this.next;
      const pc = new RTCPeerConnection({ iceServers: this.config.iceServers, bundlePolicy: "max-bundle" });
      const [audio] = this.local.getAudioTracks();
      const [video] = this.local.getVideoTracks();
      const streams = [this.local];
      const senders = {
        audio: pc.addTransceiver(audio || "audio", { direction: "sendonly", streams }).sender,
      };
      const own = pc.addTransceiver(video || "video", { direction: "sendonly", streams });
      preferVp8(own);
      senders.video = own.sender;
      const slots = [];
      for (let i = 0; i < SLOT_COUNT; i += 1) {
        const a = pc.addTransceiver("audio", { direction: "recvonly" });
        const v = pc.addTransceiver("video", { direction: "recvonly" });
        preferVp8(v);
        slots.push({
          stream: new MediaStream([a.receiver.track, v.receiver.track]),
          audioTrack: a.receiver.track.id,
          participant: null,
          figure: null,
        });
      }
      const offer = pc.createOffer();
      offer.catch(() => {}); // a failure surfaces when the offer is used
      this.next = { pc, senders, slots, offer };
      return this.next;
    }

    /* Offer (again) unless already offered through this socket connection to this node. A page
       whose socket reconnected keeps a peer connection that still works (it asks the node to
       adopt it for the new socket); a call moved to another node, or a connection that failed,
       needs a new one.

       The offer goes out at once. It carries no candidates: the browser's connectivity checks
       reach the node's candidates from the answer, and the node learns the browser's address
       from them, so nothing waits for ICE gathering. Nor does it wait for the camera: tracks
       that arrive later replace the empty ones without renegotiation. */
    async start(socket, node) {
      const key = `${socket.generation}/${node}`;
      if (this.offered === key) return;
      this.offered = key;
      if (this.pc && this.node === node && this.keepable()) {
        socket.send({ type: "adopt", node, ufrag: this.ufrag });
        return;
      }
      if (this.everConnected) this.onMediaState("reconnecting");
      this.close();
      const { pc, senders, slots, offer } = this.prepare();
      this.next = null;
      this.pc = pc;
      this.node = node;
      this.ufrag = "";
      this.senders = senders;
      this.slots = slots;
      pc.addEventListener("connectionstatechange", () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") {
          this.mark("connected");
          this.failures = 0;
          this.everConnected = true;
          this.onMediaState("connected");
        }
        if (["disconnected", "failed"].includes(pc.connectionState) && this.everConnected) {
          this.onMediaState("reconnecting");
        }
        // A connection that fails (network change, node restart) is offered again, a few
        // times; then the page says so rather than trying for ever.
        if (pc.connectionState === "failed") this.failed(socket, node, pc);
      });
      // Each attempt offers from the connection it made: a later attempt may have replaced
      // (and closed) this one meanwhile, and then this one sends nothing.
      let description;
      try {
        await pc.setLocalDescription(await offer);
        description = pc.localDescription;
      } catch (error) {
        if (pc === this.pc) this.failed(socket, node, pc);
        return;
      }
      if (pc !== this.pc) return;
      const ufrag = /^a=ice-ufrag:(\S+)/m.exec(description.sdp);
      this.ufrag = ufrag ? ufrag[1] : "";
      socket.send({ type: "offer", sdp: description.sdp });
      this.mark("offer-sent");
    }

    /* Fresh STUN/TURN servers: TURN credentials expire, and each new peer connection (after a
       reconnection, or when the call moves to another node) allocates with the newest. The
       connection prepared ahead has gathered nothing yet, so it takes them too; a connection
       in use keeps its relay, which outlives the credential it was allocated with. */
    setIceServers(servers) {
      this.config.iceServers = servers;
      if (!this.next) return;
      try {
        const { pc } = this.next;
        pc.setConfiguration(Object.assign(pc.getConfiguration(), { iceServers: servers }));
      } catch (error) {
        this.next.pc.close();
        this.next = null;
        this.prepare();
      }
    }

    /* Whether the current peer connection is worth keeping across a new socket: answered, and
       connected or on its way (a brief "disconnected" often recovers by itself). */
    keepable() {
      return Boolean(this.pc && this.pc.remoteDescription && this.ufrag)
        && ["new", "connecting", "connected", "disconnected"].includes(this.pc.connectionState);
    }

    /* Offer a new connection to the same node: it no longer has the one this page holds. */
    renew(socket) {
      const node = this.node;
      this.node = null;
      this.offered = null;
      if (node) this.start(socket, node);
    }

    /* The call's node is gone and none has taken it yet: let the connection go, and offer at
       the next `media-ready`. */
    lost() {
      this.close();
      this.node = null;
      this.offered = null;
      this.onMediaState("reconnecting");
    }

    failed(socket, node, pc) {
      this.offered = null;
      this.failures += 1;
      if (this.failures >= FAILED_ATTEMPTS) { this.close(); this.onGaveUp(); return; }
      setTimeout(() => { if (pc === this.pc) this.start(socket, node); }, 1000);
    }

    async answer(sdp) {
      if (!this.pc) return;
      this.mark("answer");
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      await this.applyVideoCap();
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
          onFirstFrame(videoEl, () => this.mark("first-frame"));
          const caption = document.createElement("figcaption");
          // Isolated: a name in another script must not reorder what stands beside it.
          const name = document.createElement("bdi");
          name.textContent = next.name;
          caption.append(name);
          const muted = document.createElement("span");
          muted.className = "muted-mark";
          muted.dataset.mutedMark = "";
          muted.hidden = true;
          muted.textContent = this.config.strings.mutedMark;
          const speaking = document.createElement("span");
          speaking.className = "speaking-mark";
          speaking.dataset.speaking = "";
          speaking.hidden = true;
          caption.append(" ", muted, " ", speaking);
          // Shown instead of a black picture while the participant's camera is off.
          const placeholder = document.createElement("div");
          placeholder.className = "camera-off-mark";
          placeholder.dataset.cameraOffMark = "";
          placeholder.hidden = true;
          const placeholderName = document.createElement("bdi");
          placeholderName.textContent = next.name;
          placeholder.append(placeholderName, document.createElement("br"), this.config.strings.cameraOffMark);
          figure.append(videoEl, placeholder, caption);
          this.remotes.append(figure);
          // Phones may refuse to play sound before a tap: play muted and offer the tap.
          videoEl.play().catch(() => {
            videoEl.muted = true;
            videoEl.play().catch(() => {});
            this.onSoundBlocked(videoEl);
          });
          slot.figure = figure;
          slot.participant = next.participant;
          slot.name = next.name;
        }
      });
      this.showMedia();
    }

    /* Who is inside, with their microphone and camera state (from `room-state`). */
    setPeople(people) {
      this.people = new Map(people.map((p) => [p.id, p]));
      this.showMedia();
    }

    /* A participant whose camera is off shows their name instead of a black picture; one
       whose microphone is off shows a muted mark. */
    showMedia() {
      if (!this.people) return;
      this.slots.forEach((slot) => {
        if (!slot.figure) return;
        const person = this.people.get(slot.participant);
        const cameraOff = Boolean(person && !person.video);
        slot.figure.classList.toggle("camera-off", cameraOff);
        slot.figure.querySelector("[data-camera-off-mark]").hidden = !cameraOff;
        slot.figure.querySelector("[data-muted-mark]").hidden = !(person && !person.audio);
      });
    }

    /* Mark who is speaking (the node tells, from the audio levels in the packets it forwards). */
    showSpeaker(participant, label) {
      this.slots.forEach((slot) => {
        if (!slot.figure) return;
        const speaking = Boolean(participant) && slot.participant === participant;
        slot.figure.classList.toggle("speaking", speaking);
        const mark = slot.figure.querySelector("[data-speaking]");
        mark.hidden = !speaking;
        mark.textContent = speaking ? label.replace("{name}", slot.name) : "";
      });
    }

    /* Cap the camera's bitrate: the node asks when a subscriber cannot take more. */
    async capVideo(bitrate) {
      this.videoCap = Math.min(MAX_VIDEO_BITRATE, bitrate);
      await this.applyVideoCap();
    }

    async applyVideoCap() {
      const sender = this.senders.video;
      if (!sender) return;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) params.encodings = [{}];
      params.encodings[0].maxBitrate = this.videoCap;
      try { await sender.setParameters(params); } catch (e) { /* keep the last cap */ }
    }

    setMuted(muted) { this.muted = muted; this.applyToggles(); }
    setCameraOff(off) { this.cameraOff = off; this.applyToggles(); }

    applyToggles() {
      this.local.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
      this.local.getVideoTracks().forEach((t) => { t.enabled = !this.cameraOff; });
    }

    close() {
      if (this.pc) { this.pc.close(); this.pc = null; }
      this.senders = {};
      this.slots.forEach((slot) => { if (slot.figure) slot.figure.remove(); });
      this.slots = [];
    }

    stop() {
      this.close();
      if (this.next) { this.next.pc.close(); this.next = null; }
      this.local.getTracks().forEach((t) => t.stop());
    }
  }

  /* Run a call page: the patient's space, the clinician's call, or a room. The page's config
     names its side ("patient", "clinician" or "room"), its hang-up button ("leave" or
     "end-call") and what it says when the consultation is over. */
  function runCallPage() {
    const config = readConfig("call-config");
    const strings = config.strings;
    const status = document.querySelector("[data-status]");
    const hangup = document.querySelector(`[data-action='${config.hangup}']`);
    const announcer = document.querySelector("[data-call-announce]");
    let finished = false;

    const stage = document.querySelector(".stage");
    const call = new Call(config, stage);
    window.vidclinicCall = call; // a handle for diagnostics and the browser tests
    call.mark("page");
    call.prepare();
    const soundButton = document.querySelector("[data-action='sound']");
    call.onSoundBlocked = () => { soundButton.hidden = false; };
    call.onGaveUp = () => { status.textContent = strings.mediaFailed; };
    soundButton.addEventListener("click", () => {
      stage.querySelectorAll("video[data-participant]").forEach((el) => { el.muted = false; el.play(); });
      soundButton.hidden = true;
    });

    /* Announced to screen readers: who came in or left, muted, and the connection's state. */
    function announce(text) { announcer.textContent = text; }

    // Mute and camera: the label says what pressing does next, aria-pressed what is on now,
    // and the others are told (they see a muted mark, or the name instead of a black picture).
    const toggles = {
      mute: { on: strings.mute, off: strings.unmute },
      camera: { on: strings.cameraOff, off: strings.cameraOn },
    };
    function tellMediaState() {
      socket.send({ type: "media-state", audio: !call.muted, video: !call.cameraOff });
    }
    document.querySelectorAll("[data-controls] button[aria-pressed]").forEach((button) => {
      button.addEventListener("click", () => {
        const pressed = button.getAttribute("aria-pressed") !== "true";
        const labels = toggles[button.dataset.action];
        button.setAttribute("aria-pressed", String(pressed));
        button.textContent = pressed ? labels.off : labels.on;
        if (button.dataset.action === "mute") call.setMuted(pressed);
        if (button.dataset.action === "camera") call.setCameraOff(pressed);
        tellMediaState();
      });
    });
    // The camera starts while the socket connects and the call is set up, not before.
    localMedia(() => {
      status.textContent = strings.noDevices;
      document.querySelectorAll("[data-device-help]").forEach((el) => { el.hidden = false; });
    }).then((stream) => {
      if (finished) { stream.getTracks().forEach((t) => t.stop()); return; }
      stage.querySelector("video[data-self]").srcObject = stream;
      call.useLocalMedia(stream);
    });

    function finish(text) {
      finished = true;
      clearTimeout(iceRefresh);
      call.stop();
      socket.close();
      const parts = document.querySelectorAll(".stage, .controls, [data-inside], [data-guest-links], [data-device-help], [data-patients]");
      const focused = document.activeElement;
      const focusLost = !focused || focused === document.body || [...parts].some((el) => el.contains(focused));
      parts.forEach((el) => { el.hidden = true; });
      status.textContent = text || config.endedText;
      document.querySelectorAll("[data-after-call]").forEach((el) => { el.hidden = false; });
      // The focus was on a control that is now gone (End call, Leave): it goes to what
      // happened, and the next Tab to where to go on, not back to the top of the page.
      if (focusLost) {
        status.tabIndex = -1;
        status.focus();
      }
    }

    // A waiting patient: their place and estimated wait when the clinic shows them, and what
    // the clinic writes to them (plain text, with a chime).
    const waiting = { state: "", position: 0, minutes: 0 };
    const patientStrings = config.patient || {};
    function showWaiting() {
      if (waiting.state === "held") { status.textContent = patientStrings.onHold; return; }
      if (waiting.state === "transferring") { status.textContent = patientStrings.transferring; return; }
      const parts = [patientStrings.waiting];
      if (waiting.position) parts.push(patientStrings.place.replace("{number}", waiting.position));
      if (waiting.minutes) parts.push(patientStrings.minutes.replace("{minutes}", waiting.minutes));
      status.textContent = parts.join(" ");
    }
    const messages = document.querySelector("[data-messages]");
    function showMessage(text, chime = true) {
      const line = document.createElement("p");
      line.textContent = text;
      messages.append(line);
      document.querySelector("[data-messages-section]").hidden = false;
      if (!chime) return;
      try {
        const audio = new AudioContext();
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = 880;
        gain.gain.value = 0.1;
        tone.connect(gain).connect(audio.destination);
        tone.start();
        tone.stop(audio.currentTime + 0.2);
      } catch (e) { /* no sound on this device */ }
    }

    // In a call: whether the other side is here. A patient whose clinician's page is not in
    // the call hears that they stepped away (or are on the way, before they first came); a
    // clinician whose patient's page dropped hears that it is awaited.
    const presence = { people: null, seen: new Set() };
    // The media path: "reconnecting" while a connection that worked is being replaced (its
    // node failed, the call moved), "no-capacity" while no media node has room for the call.
    const media = { reconnecting: false, noCapacity: false };
    call.onMediaState = (state) => {
      const reconnecting = state === "reconnecting";
      if (reconnecting === media.reconnecting) return;
      media.reconnecting = reconnecting;
      announce(reconnecting ? strings.reconnecting : strings.connectionBack);
      showInCall();
    };
    function othersHere(role) {
      return presence.people !== null && presence.people.some((p) => p.role === role);
    }
    function showInCall() {
      if (finished || waiting.state !== "in-call") return;
      if (media.noCapacity) {
        status.textContent = strings.noCapacity;
      } else if (media.reconnecting) {
        status.textContent = strings.reconnecting;
      } else if (config.side === "patient" && presence.people !== null && !othersHere("clinician")) {
        status.textContent = presence.seen.size ? patientStrings.steppedAway : patientStrings.joining;
      } else if (config.side === "clinician" && presence.people !== null && !othersHere("patient")) {
        status.textContent = strings.patientAway;
      } else {
        status.textContent = strings.inCall;
      }
    }
    function showPeople(everyone) {
      const people = everyone.filter((p) => p.id !== config.me);
      const before = presence.people ? new Map(presence.people.map((p) => [p.id, p])) : null;
      presence.people = people;
      people.forEach((p) => { if (p.role === "clinician") presence.seen.add(p.id); });
      call.setPeople(people);
      if (before) {
        const now = new Map(people.map((p) => [p.id, p]));
        people.forEach((p) => {
          const was = before.get(p.id);
          if (!was) announce(strings.joinedCall.replace("{name}", p.name));
          else if (was.audio && !p.audio) announce(strings.mutedCall.replace("{name}", p.name));
        });
        before.forEach((p, id) => { if (!now.has(id)) announce(strings.leftCall.replace("{name}", p.name)); });
      }
      showInCall();
    }

    // A room: who is inside, and its lock (anyone inside may lock or unlock it).
    const people = document.querySelector("[data-people]");
    const lockButton = document.querySelector("[data-action='lock']");
    const lockState = document.querySelector("[data-lock-state]");
    function showRoom(state) {
      showPeople(state.people);
      if (people) {
        people.replaceChildren(...state.people.map((person) => {
          const item = document.createElement("li");
          item.textContent = person.name;
          item.dir = "auto";
          return item;
        }));
      }
      if (lockButton) {
        lockButton.dataset.locked = String(state.locked);
        lockButton.textContent = state.locked ? strings.unlock : strings.lock;
        lockState.textContent = state.locked ? strings.locked : "";
      }
    }
    if (lockButton) {
      lockButton.addEventListener("click", () => {
        socket.send({ type: "lock", locked: lockButton.dataset.locked !== "true" });
      });
    }

    const endedTexts = config.endedTexts || {};
    let connected = false; // the socket is open now
    const socket = openSocket(config.socket, (message) => {
      if (finished) return;
      // What a node this page has left still says (one back from a network cut may deliver
      // what it held meanwhile) is not about the connection the page has now.
      if (FROM_NODE.includes(message.type) && message.node && message.node !== call.node) return;
      switch (message.type) {
        case "call-started":
          call.mark("call-started");
          waiting.state = "in-call";
          showInCall();
          break;
        case "held":
          // On hold: media stops at once; the patient waits on this page to be resumed.
          call.close();
          call.offered = null;
          waiting.state = "held";
          presence.people = null;
          showWaiting();
          break;
        case "back-to-waiting":
          // The clinician left without ending the call: waiting again, in the same place.
          call.close();
          call.offered = null;
          waiting.state = "waiting";
          presence.people = null;
          showWaiting();
          showMessage(patientStrings.backToWaiting, false);
          break;
        case "transferred":
          call.close();
          call.offered = null;
          waiting.state = "transferring";
          waiting.transferSaidUntil = Date.now() + TRANSFER_NOTICE_MS;
          showWaiting();
          break;
        case "waiting-status": {
          waiting.position = message.position;
          waiting.minutes = message.minutes;
          // The new clinic's figures come at once: "being transferred" stays long enough to read.
          const later = (waiting.transferSaidUntil || 0) - Date.now();
          if (waiting.state === "transferring" && later > 0) {
            setTimeout(() => {
              if (waiting.state === "transferring") { waiting.state = "waiting"; showWaiting(); }
            }, later);
            break;
          }
          waiting.state = "waiting";
          showWaiting();
          break;
        }
        case "clinic-message": showMessage(message.text); break;
        case "media-ready":
          call.mark("media-ready");
          if (config.side !== "patient") waiting.state = "in-call";
          media.noCapacity = false;
          showInCall();
          call.start(socket, message.node);
          break;
        case "ice-servers": call.setIceServers(message.servers); keepIceFresh(message.ttl); break;
        case "media-moving": call.lost(); break;
        case "answer": call.answer(message.sdp); break;
        case "slots": call.setSlots(message.slots); call.showSpeaker(call.speaker, strings.speaking); break;
        case "speaker": call.speaker = message.participant; call.showSpeaker(message.participant, strings.speaking); break;
        case "bitrate": call.capVideo(message.video); break;
        case "room-state": showRoom(message); break;
        case "ended": finish(endedTexts[message.reason]); break;
        case "error":
          if (message.code === "forbidden" || message.code === "not-found") finish();
          // The node no longer holds the connection this page kept across a new socket.
          else if (message.code === "not-adopted") call.renew(socket);
          // The offer went out as the call's node failed: the next `media-ready` names another.
          else if (message.code === "media-not-ready") call.offered = null;
          else if (message.code === "no-media-node") {
            if (config.side !== "patient") waiting.state = "in-call";
            media.noCapacity = true;
            showInCall();
          }
          // Refused at the door (nothing was set up), or taken over by a newer tab, or signed
          // out: the page says why and stops reconnecting.
          else if (["room-full", "room-locked", "link-used", "replaced", "signed-out"].includes(message.code)) {
            finish(message.message);
          }
          // A team member's action refused (another clinician won the patient, the call is
          // full): the call goes on, and the server's sentence says why.
          else status.textContent = TOLD_AS_IS.includes(message.code) ? message.message : strings.error;
          break;
        // Anything else is for the page's other parts (the clinician's patient panel).
        default: document.dispatchEvent(new CustomEvent("vidclinic:message", { detail: message })); break;
      }
    }, (state, generation) => {
      if (state === "open") {
        call.mark("socket-open");
        tellMediaState();
        if (generation > 1) announce(strings.connectionBack);
        connected = true;
      }
      if (state === "lost" && !finished) {
        status.textContent = strings.lostConnection;
        // Once per outage: every failed retry closes a socket too, and a screen reader would
        // repeat the sentence each time.
        if (connected) announce(strings.lostConnection);
        connected = false;
      }
    });
    window.vidclinicSocket = socket; // the page's other parts send through it too

    // TURN credentials expire (after `ttl` seconds; 0: none here): ask for fresh ones halfway
    // through, so a page open for hours still relays its next connection. Every socket that
    // joins a call is sent fresh ones as well, before its `media-ready`.
    let iceRefresh = null;
    function keepIceFresh(ttl) {
      clearTimeout(iceRefresh);
      if (!(ttl > 0)) return;
      const delay = Math.min(ttl * 500, 2 ** 31 - 1); // setTimeout's longest
      iceRefresh = setTimeout(() => socket.send({ type: "refresh-ice-servers" }), delay);
    }
    keepIceFresh(config.iceTtl);

    // A waiting patient who closes the page on purpose leaves the waiting area at once (a
    // reload comes back within moments and keeps their place).
    if (config.side === "patient") {
      window.addEventListener("pagehide", () => {
        if (!finished && waiting.state !== "in-call") socket.send({ type: "leaving" });
      });
    }

    // Nothing below waits on the camera: hanging up never waits on a device prompt. A patient
    // confirms first: the button is easy to press by mistake.
    const confirmDialog = document.querySelector("[data-confirm-leave]");
    function hangUp() {
      hangup.disabled = true;
      socket.send({ type: config.hangup });
    }
    hangup.addEventListener("click", () => {
      if (!confirmDialog) { hangUp(); return; }
      confirmDialog.querySelector("[data-confirm-question]").textContent =
        waiting.state === "in-call" ? patientStrings.confirmLeaveCall : patientStrings.confirmLeave;
      confirmDialog.showModal();
    });
    if (confirmDialog) {
      confirmDialog.addEventListener("close", () => {
        if (confirmDialog.returnValue === "leave") hangUp();
        else hangup.focus();
      });
    }
    document.querySelectorAll("[data-controls] button").forEach((button) => { button.disabled = false; });
  }

  return { runCallPage };
})();

VC.runCallPage();
