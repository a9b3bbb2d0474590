/* The pre-call check: browser support, camera preview, microphone level, a test sound, and a
   connection test to a live media node. Each part gives a plain verdict (announced: each is a
   status region) and says what to do about a failure; all of it within 30 seconds. */
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("check-config").textContent);
  const strings = config.strings;
  const PROTOCOL = 1;
  const SLOT_COUNT = 5;
  // The parts the summary waits for; the speakers need the person's answer.
  const AUTOMATIC = ["browser", "camera", "microphone", "connection"];
  const VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
  const FIRST_FRAME_WAIT = 8000; // ms a granted camera has to show a picture
  const QUIET_AFTER = 10000; // ms of silence before the microphone verdict says so
  const SOUND_LEVEL = 0.05; // peak sample level (0..1) that counts as sound heard
  const PHASE_WAIT = 12000; // ms one connection attempt has to get media through
  const CHECK_WAIT = 30000; // ms the whole connection test has at most
  const SLOW_RTT = 300; // ms of round trip above which the connection counts as slow
  const RTT_SETTLE = 1500; // ms of round trips measured once media got through

  const results = { connection: null };
  // A handle for diagnostics and the browser tests.
  window.vidclinicCheck = { states: {}, results };

  function part(name) { return document.querySelector(`[data-check='${name}']`); }

  /* Show a part's verdict ("pending", "ok", "warn" or "fail") and what to do about it. */
  function verdict(name, state, text, help) {
    const el = part(name);
    el.dataset.state = state;
    const line = el.querySelector("[data-verdict]");
    if (line.textContent !== text) line.textContent = text;
    const helpEl = el.querySelector("[data-help]");
    helpEl.textContent = help || "";
    helpEl.hidden = !help;
    window.vidclinicCheck.states[name] = state;
    summarise();
  }

  function summarise() {
    const states = window.vidclinicCheck.states;
    if (!AUTOMATIC.every((name) => states[name] && states[name] !== "pending")) return;
    const text = AUTOMATIC.every((name) => states[name] === "ok") ? strings.allPassed : strings.needsAttention;
    const summary = document.querySelector("[data-summary]");
    if (summary.textContent !== text) summary.textContent = text;
  }

  function joined(...sentences) { return sentences.filter(Boolean).join(" "); }

  /* --- browser support ------------------------------------------------------------------ */

  function browserSupport() {
    if (!window.isSecureContext) {
      verdict("browser", "fail", strings.insecure, strings.insecureHelp);
      return false;
    }
    const media = navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
    if (!window.RTCPeerConnection || !media || !window.WebSocket) {
      verdict("browser", "fail", strings.browserUnsupported, strings.browserUnsupportedHelp);
      return false;
    }
    verdict("browser", "ok", strings.browserOk);
    return true;
  }

  /* --- camera and microphone ------------------------------------------------------------ */

  /* Both devices if possible, else each on its own, so one that fails does not hide the other
     (the same order a call asks in). Returns the tracks got and each kind's error. */
  async function askForDevices() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: VIDEO });
      return { video: stream.getVideoTracks()[0], audio: stream.getAudioTracks()[0], errors: {} };
    } catch (error) { /* try each on its own */ }
    const got = { errors: {} };
    for (const kind of ["video", "audio"]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ [kind]: kind === "video" ? VIDEO : true });
        got[kind] = stream.getTracks()[0];
      } catch (error) {
        got.errors[kind] = error;
      }
    }
    return got;
  }

  function problem(error) {
    const name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "denied";
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") return "missing";
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") return "busy";
    return "missing";
  }

  /* What a failed device's verdict says: what happened, how to put it right, and that the
     call can go on without it. */
  function deviceFailure(kind, error, otherWorks) {
    const prefix = kind === "video" ? "camera" : "microphone";
    const kindOf = problem(error);
    const without = otherWorks ? strings[kind === "video" ? "withoutCamera" : "withoutMicrophone"] : strings.withoutBoth;
    if (kindOf === "denied") return { text: strings[`${prefix}Denied`], help: joined(strings.allow, without) };
    if (kindOf === "busy") return { text: strings[`${prefix}Busy`], help: joined(strings[`${prefix}BusyHelp`], without) };
    return { text: strings[`${prefix}Missing`], help: joined(strings[`${prefix}MissingHelp`], without) };
  }

  function showCamera(track, otherWorks) {
    const preview = document.querySelector("[data-preview]");
    preview.srcObject = new MediaStream([track]);
    preview.play().catch(() => {});
    let shown = false;
    const frame = () => {
      if (shown) return;
      shown = true;
      verdict("camera", "ok", strings.cameraOk);
    };
    if (preview.requestVideoFrameCallback) preview.requestVideoFrameCallback(frame);
    else preview.addEventListener("playing", frame, { once: true });
    setTimeout(() => {
      if (shown) return;
      shown = true;
      const without = otherWorks ? strings.withoutCamera : strings.withoutBoth;
      verdict("camera", "fail", strings.cameraNoPicture, joined(strings.cameraNoPictureHelp, without));
    }, FIRST_FRAME_WAIT);
  }

  /* The microphone's level on a meter (Web Audio's AnalyserNode), and a verdict once sound
     was heard. The meter shows the loudest sample of the last fraction of a second. */
  function showMicrophone(track) {
    const meter = document.querySelector("[data-meter]");
    const audio = new AudioContext();
    const source = audio.createMediaStreamSource(new MediaStream([track]));
    const analyser = audio.createAnalyser();
    analyser.fftSize = 8192; // longer than the time between two readings: no sound is missed
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let listening = null; // when the audio started running: silence counts from then
    let heard = false;
    let quiet = false;
    verdict("microphone", "pending", strings.microphoneSpeak);
    const reading = setInterval(() => {
      if (track.readyState === "ended") { clearInterval(reading); return; }
      if (audio.state !== "running") return;
      if (listening === null) listening = Date.now();
      analyser.getFloatTimeDomainData(samples);
      let peak = 0;
      for (let i = 0; i < samples.length; i += 1) peak = Math.max(peak, Math.abs(samples[i]));
      const level = Math.min(100, Math.round(Math.sqrt(peak) * 100));
      meter.value = level;
      meter.textContent = String(level);
      meter.setAttribute("aria-valuetext", strings.level.replace("{level}", level));
      if (!heard && peak >= SOUND_LEVEL) {
        heard = true;
        verdict("microphone", "ok", strings.microphoneOk);
      } else if (!heard && !quiet && Date.now() - listening > QUIET_AFTER) {
        quiet = true;
        verdict("microphone", "warn", strings.microphoneQuiet, strings.microphoneQuietHelp);
      }
    }, 100);
    // A browser may hold audio until the person presses something on the page.
    if (audio.state !== "running") {
      audio.resume().catch(() => {});
      setTimeout(() => {
        if (audio.state === "running") return;
        const start = document.querySelector("[data-action='start-meter']");
        start.hidden = false;
        verdict("microphone", "pending", strings.meterStart);
        start.addEventListener("click", () => {
          audio.resume().then(() => {
            start.hidden = true;
            if (!heard) verdict("microphone", "pending", strings.microphoneSpeak);
          }).catch(() => {});
        });
      }, 500);
    }
  }

  async function devices() {
    const got = await askForDevices();
    if (got.video) showCamera(got.video, Boolean(got.audio));
    else {
      const failure = deviceFailure("video", got.errors.video, Boolean(got.audio));
      verdict("camera", "fail", failure.text, failure.help);
    }
    if (got.audio) showMicrophone(got.audio);
    else {
      const failure = deviceFailure("audio", got.errors.audio, Boolean(got.video));
      verdict("microphone", "fail", failure.text, failure.help);
    }
    window.addEventListener("pagehide", () => {
      [got.video, got.audio].forEach((track) => { if (track) track.stop(); });
    });
  }

  /* --- speakers ------------------------------------------------------------------------- */

  function speakers() {
    const play = document.querySelector("[data-action='play-sound']");
    const question = document.querySelector("[data-heard]");
    let audio = null;
    play.addEventListener("click", () => {
      audio = audio || new AudioContext();
      audio.resume().catch(() => {});
      // Two soft tones, rising: easy to notice, not startling.
      const now = audio.currentTime;
      [[523.25, 0], [659.25, 0.45]].forEach(([frequency, at]) => {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = frequency;
        gain.gain.setValueAtTime(0, now + at);
        gain.gain.linearRampToValueAtTime(0.25, now + at + 0.05);
        gain.gain.setValueAtTime(0.25, now + at + 0.35);
        gain.gain.linearRampToValueAtTime(0, now + at + 0.45);
        tone.connect(gain).connect(audio.destination);
        tone.start(now + at);
        tone.stop(now + at + 0.5);
      });
      question.hidden = false;
      verdict("speakers", "pending", strings.soundPlaying);
    });
    question.querySelector("[data-action='heard']").addEventListener("click", () => {
      verdict("speakers", "ok", strings.speakersOk);
    });
    question.querySelector("[data-action='not-heard']").addEventListener("click", () => {
      verdict("speakers", "fail", strings.speakersNotHeard, strings.speakersHelp);
    });
  }

  /* --- connection ----------------------------------------------------------------------- */

  function socketUrl(route) {
    const path = new URL(route, location.href).pathname;
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function hasRelay() {
    return (config.iceServers || []).some((server) => {
      const urls = [].concat(server.urls || server.url || []);
      return urls.some((url) => /^turns?:/i.test(url));
    });
  }

  /* A moving picture and a quiet tone: what the test sends, so it needs no camera or
     microphone (and works when they are refused). */
  function testMedia() {
    const canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 180;
    const draw = canvas.getContext("2d");
    let step = 0;
    const painting = setInterval(() => {
      step += 1;
      draw.fillStyle = `hsl(${(step * 7) % 360}, 60%, 45%)`;
      draw.fillRect(0, 0, canvas.width, canvas.height);
      draw.fillStyle = "#fff";
      draw.fillRect((step * 8) % canvas.width, 0, 24, canvas.height);
    }, 66);
    const video = canvas.captureStream(15).getVideoTracks()[0];
    let audio = null;
    let context = null;
    try {
      context = new AudioContext();
      const tone = context.createOscillator();
      const gain = context.createGain();
      gain.gain.value = 0.05;
      const sink = context.createMediaStreamDestination();
      tone.connect(gain).connect(sink);
      tone.start();
      audio = sink.stream.getAudioTracks()[0];
    } catch (error) { /* video alone still shows whether media gets through */ }
    return {
      audio,
      video,
      stop() {
        clearInterval(painting);
        video.stop();
        if (audio) audio.stop();
        if (context) context.close().catch(() => {});
      },
    };
  }

  function preferVp8(transceiver) {
    if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
    const vp8 = codecs.filter((c) => /^video\/(vp8|rtx)$/i.test(c.mimeType));
    try { transceiver.setCodecPreferences(vp8); } catch (e) { /* the node strips the rest */ }
  }

  /* A peer connection of the same shape as a call's: own audio and video, then five
     receive-only pairs. The sender carries the test media; the receiver sends nothing. */
  function peerConnection(policy, media) {
    const pc = new RTCPeerConnection({
      iceServers: config.iceServers || [],
      iceTransportPolicy: policy,
      bundlePolicy: "max-bundle",
    });
    pc.addTransceiver((media && media.audio) || "audio", { direction: "sendonly" });
    preferVp8(pc.addTransceiver((media && media.video) || "video", { direction: "sendonly" }));
    for (let i = 0; i < SLOT_COUNT; i += 1) {
      pc.addTransceiver("audio", { direction: "recvonly" });
      preferVp8(pc.addTransceiver("video", { direction: "recvonly" }));
    }
    return pc;
  }

  /* What the receiver got, and the round trips measured on either connection: its selected
     candidate pair's (STUN consent checks) and RTCP's. */
  async function measure(receiver, sender) {
    const figures = { frames: 0, audioPackets: 0, rtts: [], relayed: false };
    for (const pc of [receiver, sender]) {
      const stats = await pc.getStats();
      let selected = null;
      stats.forEach((report) => {
        if (report.type === "transport" && report.selectedCandidatePairId) selected = stats.get(report.selectedCandidatePairId);
      });
      stats.forEach((report) => {
        if (pc === receiver && report.type === "inbound-rtp") {
          if (report.kind === "video") figures.frames += report.framesDecoded || 0;
          if (report.kind === "audio") figures.audioPackets += report.packetsReceived || 0;
        }
        if (!selected && report.type === "candidate-pair" && report.nominated && report.state === "succeeded") selected = report;
        if (report.type === "remote-inbound-rtp" && report.roundTripTime) figures.rtts.push(report.roundTripTime);
      });
      if (selected) {
        if (selected.currentRoundTripTime) figures.rtts.push(selected.currentRoundTripTime);
        const local = stats.get(selected.localCandidateId);
        if (local && local.candidateType === "relay") figures.relayed = true;
      }
    }
    return figures;
  }

  class ConnectionTest {
    constructor(onDone) {
      this.onDone = onDone;
      this.pcs = {};
      this.media = null;
      this.ready = false;
      this.finished = false;
      this.socket = null;
    }

    start() {
      verdict("connection", "pending", strings.connecting);
      this.deadline = setTimeout(() => this.finish({ failure: "timeout" }), CHECK_WAIT);
      const ws = new WebSocket(socketUrl(config.socket));
      this.socket = ws;
      ws.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        this.receive(message);
      };
      ws.onclose = () => { if (!this.finished) this.finish({ failure: "lost" }); };
    }

    send(message) {
      if (this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(Object.assign({ v: PROTOCOL }, message)));
      }
    }

    receive(message) {
      if (this.finished) return;
      if (message.type === "check-ready") {
        this.ready = true;
        this.run().then((outcome) => this.finish(outcome), () => this.finish({ failure: "failed" }));
      } else if (message.type === "check-answer") {
        const pc = this.pcs[message.phase] && this.pcs[message.phase][message.leg];
        if (pc) pc.setRemoteDescription({ type: "answer", sdp: message.sdp }).catch(() => {});
      } else if (message.type === "ended") {
        this.finish({ failure: "timeout" });
      } else if (message.type === "error") {
        if (!this.ready) {
          const refusals = { "rate-limited": "rateLimited", "checks-busy": "busy", "media-unavailable": "unavailable" };
          this.finish({ failure: refusals[message.code] || "failed" });
        } else {
          this.failedPhase = true; // the node refused an offer: this attempt cannot work
        }
      }
    }

    async run() {
      this.media = testMedia();
      const direct = await this.phase("direct", "all");
      let relay = null;
      if (hasRelay()) relay = await this.phase("relay", "relay");
      return { direct, relay };
    }

    /* Connect a sender and a receiver; resolves with what got through (frames > 0). */
    async phase(name, policy) {
      this.failedPhase = false;
      const sender = peerConnection(policy, this.media);
      const receiver = peerConnection(policy, null);
      this.pcs[name] = { send: sender, receive: receiver };
      for (const [leg, pc] of [["send", sender], ["receive", receiver]]) {
        await pc.setLocalDescription(await pc.createOffer());
        this.send({ type: "check-offer", phase: name, leg, sdp: pc.localDescription.sdp });
      }
      const until = Date.now() + PHASE_WAIT;
      let figures = { frames: 0, audioPackets: 0, rtts: [], relayed: false };
      const rtts = [];
      let throughAt = null;
      while (Date.now() < until && !this.finished && !this.failedPhase) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        figures = await measure(receiver, sender);
        rtts.push(...figures.rtts);
        if (figures.frames > 0 && throughAt === null) throughAt = Date.now();
        // Media got through: a moment more of round trips, since a connection's first checks
        // may wait on a node still setting it up. The path's own delay is the least of them.
        if (throughAt !== null && rtts.length && Date.now() - throughAt >= RTT_SETTLE) break;
      }
      sender.close();
      receiver.close();
      const rtt = rtts.length ? Math.min(...rtts) : null;
      return { frames: figures.frames, audioPackets: figures.audioPackets, relayed: figures.relayed, rtt, ok: figures.frames > 0 };
    }

    finish(outcome) {
      if (this.finished) return;
      this.finished = true;
      clearTimeout(this.deadline);
      Object.values(this.pcs).forEach((pair) => { pair.send.close(); pair.receive.close(); });
      if (this.media) this.media.stop();
      if (this.socket) this.socket.close();
      this.onDone(outcome);
    }
  }

  function showConnection(outcome) {
    results.connection = outcome;
    const again = document.querySelector("[data-action='test-again']");
    const failures = {
      rateLimited: [strings.rateLimited, ""],
      busy: [strings.busy, ""],
      unavailable: [strings.unavailable, strings.unavailableHelp],
      lost: [strings.lost, strings.lostHelp],
    };
    if (outcome.failure) {
      const [text, help] = failures[outcome.failure] || [strings.connectionFailed, strings.connectionFailedHelp];
      verdict("connection", "fail", text, help);
    } else {
      const { direct, relay } = outcome;
      const through = direct.ok ? direct : relay;
      if (!through || !through.ok) {
        verdict("connection", "fail", strings.connectionFailed, strings.connectionFailedHelp);
      } else {
        const ms = through.rtt === null ? null : String(Math.round(through.rtt * 1000));
        const roundTrip = ms === null ? "" : strings.roundTrip.replace("{ms}", ms);
        if (ms !== null && Number(ms) > SLOW_RTT) {
          verdict("connection", "warn", strings.connectionSlow.replace("{ms}", ms), strings.connectionSlowHelp);
        } else if (relay && !relay.ok) {
          verdict("connection", "warn", joined(strings.relayFailed, roundTrip), strings.relayFailedHelp);
        } else if (!direct.ok || direct.relayed) {
          verdict("connection", "ok", joined(strings.connectionRelayed, roundTrip));
        } else {
          const alsoRelayed = relay && relay.ok ? strings.relayOk : "";
          verdict("connection", "ok", joined(strings.connectionOk, alsoRelayed, roundTrip));
        }
      }
    }
    again.hidden = false;
  }

  function connection() {
    const again = document.querySelector("[data-action='test-again']");
    const run = () => { again.hidden = true; new ConnectionTest(showConnection).start(); };
    again.addEventListener("click", run);
    run();
  }

  /* --- start ---------------------------------------------------------------------------- */

  speakers();
  if (browserSupport()) {
    connection();
    devices();
  } else {
    ["camera", "microphone", "connection"].forEach((name) => verdict(name, "fail", strings.notTested));
  }
})();
