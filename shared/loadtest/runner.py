"""The load test: who takes part, the ramp, the live line and the report.

Everything goes through the deployment's public entry points, as browsers use them:

- a **waiting patient** gets the clinic's entry page, posts its form (with the page's CSRF
  token), then opens its space's socket and waits; at the end it leaves (`leave`);
- a **dashboard** is a signed-in member's waiting-area socket: it notes when each patient's
  card arrives;
- a **call** is a consultation: P-1 patients enter and wait, a clinician presses Join on one
  from a dashboard and "Add to call" on the others from the call page's socket; on
  `media-ready` every participant sends its offer over its socket, takes the node's answer
  from it, and connects to the media node (ICE, DTLS) like a browser; at the end the clinician
  presses "End call".

Staff credentials come from the operator (options or environment), never from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from websockets.exceptions import WebSocketException

from media.ice import use_host_addresses
from shared.loadtest.client import HTTP_THREADS, Browser, RemoteTarget, Socket, loopback_only
from shared.loadtest.media import audio_clip, video_clip
from shared.loadtest.peer import Peer

#: Seconds to wait for an answer, a card, media, or an ending before counting an error.
WAIT = 15.0
#: Seconds the clean-up (leaving, ending calls) may take at most.
CLEANUP = 20.0
MAX_DURATION = 3600.0
MAX_PEOPLE = 100_000
#: People in one call at most (the server's limit).
MAX_PARTICIPANTS = 6


class PlanError(ValueError):
    """The load asked for cannot be run as given (the message says why)."""


@dataclass(frozen=True)
class Staff:
    email: str
    password: str


@dataclass(frozen=True)
class Plan:
    """What to simulate, against what, how fast and for how long."""

    url: str
    clinic: str = "demo"
    patients: int = 0
    dashboards: int = 0
    calls: int = 0
    participants: int = 2
    #: Patients entering per second (the waiting ones and the calls' alike).
    rate: float = 5.0
    #: Seconds from the start until everyone leaves (then clean-up, at most CLEANUP more).
    duration: float = 60.0
    staff: tuple[Staff, ...] = ()
    #: Sockets one staff account may hold open (the deployment's VIDCLINIC_SOCKETS_PER_USER).
    sockets_per_user: int = 8
    video_kbps: int = 500
    #: Answers to the clinic's own entry questions (key → value), given to every patient.
    answers: tuple[tuple[str, str], ...] = ()
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PlanError("the target must be an http:// or https:// URL")
        if min(self.patients, self.dashboards, self.calls) < 0:
            raise PlanError("counts cannot be negative")
        if self.patients + self.calls * self.participants > MAX_PEOPLE:
            raise PlanError(f"at most {MAX_PEOPLE} simulated people")
        if not 2 <= self.participants <= MAX_PARTICIPANTS:
            raise PlanError(f"a call has 2 to {MAX_PARTICIPANTS} participants")
        if not 0 < self.rate <= 1000:
            raise PlanError("the rate is between 0 and 1000 entries a second")
        if not 0 < self.duration <= MAX_DURATION:
            raise PlanError(f"the duration is between 0 and {MAX_DURATION:.0f} seconds")
        if (self.dashboards or self.calls) and not self.staff:
            raise PlanError(
                "dashboards and calls need a staff account: --staff-email and "
                "--staff-password (or VIDCLINIC_LOADTEST_EMAIL / VIDCLINIC_LOADTEST_PASSWORD)"
            )
        for index, sockets in enumerate(self.sockets_by_account()):
            if sockets > self.sockets_per_user:
                raise PlanError(
                    f"{self.staff[index].email} would hold {sockets} sockets, more than "
                    f"{self.sockets_per_user} (VIDCLINIC_SOCKETS_PER_USER): give more staff "
                    "accounts, or raise the deployment's limit and --sockets-per-user"
                )

    @property
    def call_patients(self) -> int:
        return self.calls * (self.participants - 1)

    def sockets_by_account(self) -> list[int]:
        """Sockets each account holds: its dashboards, a call page per call, and a dashboard
        to press Join from where it has none."""
        accounts = len(self.staff)
        if not accounts:
            return []
        dashboards = [len(range(a, self.dashboards, accounts)) for a in range(accounts)]
        calls = [len(range(a, self.calls, accounts)) for a in range(accounts)]
        return [d + c + (1 if c and not d else 0) for d, c in zip(dashboards, calls, strict=True)]


@dataclass
class Stats:
    """What happened, as the load tester saw it."""

    entry_seconds: list[float] = field(default_factory=list)
    entry_refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: Patient name → when its form was posted (monotonic).
    arrivals: dict[str, float] = field(default_factory=dict)
    #: Patient name → when each dashboard got its card.
    seen: dict[str, list[float]] = field(default_factory=dict)
    patient_sockets: int = 0
    patients_waiting: int = 0
    dashboards_open: int = 0
    desks: int = 0
    calls_started: int = 0
    call_sockets: int = 0
    left: int = 0
    ended: int = 0
    sign_ins: int = 0

    def error(self, what: str) -> None:
        self.errors[what] += 1


class Patient:
    """A patient's page: the entry form, then the space's socket; in a call, its media."""

    def __init__(self, run: Run, index: int, in_call: bool) -> None:
        self.run = run
        self.name_last = f"{run.id}-{index:05d}"
        self.name = f"Loadtest {self.name_last}"
        self.in_call = in_call
        self.browser = Browser(run.plan.url, run.pool)
        self.socket: Socket | None = None
        self.peer = Peer(video_kbps=run.plan.video_kbps)
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()
        #: The page heard `ended` (not merely its socket closing).
        self.ended = False
        self.asked_at: float | None = None
        self._listening: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def slug(self) -> str:
        return self.run.plan.clinic

    async def arrive(self) -> None:
        """Enter as the form does, then open the space's socket."""
        stats = self.run.stats
        form = {
            "first_name": "Loadtest",
            "last_name": self.name_last,
            "phone": "+380 44 000 0000",
            **dict(self.run.plan.answers),
        }
        try:
            token = await self.browser.csrf_token(f"/c/{self.slug}")
            self.run.stats.arrivals[self.name] = time.monotonic()
            reply = await self.browser.post(f"/c/{self.slug}/enter", {"csrf_token": token, **form})
        except OSError as error:
            stats.entry_refused[f"no answer ({type(error).__name__})"] += 1
            self.finished.set()
            return
        if reply.status != 303:
            stats.entry_refused[_entry_refusal(reply.status)] += 1
            self.finished.set()
            return
        stats.entry_seconds.append(reply.seconds)
        try:
            self.socket = await self.browser.socket(f"/c/{self.slug}/space/ws")
        except (OSError, WebSocketException, TimeoutError) as error:
            stats.error(f"patient socket refused ({type(error).__name__})")
            self.finished.set()
            return
        stats.patient_sockets += 1
        stats.patients_waiting += 1
        await self.socket.send({"type": "media-state", "audio": True, "video": True})
        self.connected.set()
        self._listening = asyncio.create_task(self._listen(self.socket))

    async def _listen(self, socket: Socket) -> None:
        stats = self.run.stats
        try:
            async for message in socket.messages():
                kind = message.get("type")
                if kind == "media-ready":
                    await self.peer.offer_once(socket, message["node"])
                elif kind == "call-started":
                    stats.patients_waiting -= 1
                elif kind == "answer":
                    await self.peer.answer(message["sdp"])
                elif kind == "slots":
                    self.peer.slots = {s["slot"]: s["participant"] for s in message["slots"]}
                elif kind == "ended":
                    stats.ended += 1
                    self.ended = True
                    self.finished.set()
                    return
                elif kind == "error":
                    stats.error(f"patient: {message.get('code')}")
        except (WebSocketException, OSError):
            pass
        finally:
            if not self.finished.is_set() and not self._closing:
                self.run.closed_by_server("patient", socket)
            self.finished.set()

    async def leave(self) -> None:
        """Press Leave (a waiting patient) and wait for the page's "ended"."""
        if self.socket is not None and not self.finished.is_set():
            with contextlib.suppress(WebSocketException, OSError, TimeoutError):
                await self.socket.send({"type": "leave"})
                await asyncio.wait_for(self.finished.wait(), WAIT)
                if self.ended:
                    self.run.stats.left += 1

    async def close(self) -> None:
        self._closing = True
        await self.peer.close()
        if self.socket is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await self.socket.close()
        if self._listening is not None:
            self._listening.cancel()


def _entry_refusal(status: int) -> str:
    if status == 429:
        return "429 (the entry rate limit: VIDCLINIC_ENTRY_RATE / VIDCLINIC_CLINIC_ENTRY_RATE)"
    if status == 400:
        return "400 (the form was refused: does the clinic ask its own questions? --answer)"
    if status == 403:
        return "403 (the waiting area is closed)"
    return str(status)


class Member:
    """A signed-in staff account: one browser, its dashboards and its call pages."""

    def __init__(self, run: Run, staff: Staff) -> None:
        self.run = run
        self.staff = staff
        self.browser = Browser(run.plan.url, run.pool)
        self.dashboards: list[Dashboard] = []

    async def sign_in(self) -> None:
        form = {"email": self.staff.email, "password": self.staff.password}
        reply = await self.browser.submit("/login", form)
        if reply.status != 302:
            raise PlanError(f"signing in as {self.staff.email} failed ({reply.status})")
        self.run.stats.sign_ins += 1

    async def sign_out(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self.browser.submit(
                "/logout", {}, page=f"/clinics/{self.run.plan.clinic}/waiting-area"
            )


class Dashboard:
    """A waiting-area dashboard: when each card arrives, and Join."""

    def __init__(self, run: Run, member: Member, watching: bool) -> None:
        self.run = run
        self.member = member
        #: Counted in the arrival figures (a dashboard opened only to press Join is not).
        self.watching = watching
        self.socket: Socket | None = None
        self.spaces: dict[str, str] = {}  # patient name → space id
        self._cards = asyncio.Condition()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._join_lock = asyncio.Lock()
        self._listening: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        path = f"/clinics/{self.run.plan.clinic}/waiting-area/ws"
        try:
            self.socket = await self.member.browser.socket(path)
        except (OSError, WebSocketException, TimeoutError) as error:
            self.run.stats.error(f"dashboard socket refused ({type(error).__name__})")
            return
        opened = asyncio.get_running_loop().create_future()
        self._listening = asyncio.create_task(self._listen(self.socket, opened))
        try:
            await asyncio.wait_for(opened, WAIT)
        except TimeoutError:
            self.run.stats.error("dashboard: no waiting area")
            return
        if self.watching:
            self.run.stats.dashboards_open += 1
        else:
            self.run.stats.desks += 1

    async def _listen(self, socket: Socket, opened: asyncio.Future[None]) -> None:
        stats, prefix = self.run.stats, f"Loadtest {self.run.id}-"
        try:
            async for message in socket.messages():
                kind = message.get("type")
                if kind == "space-changed":
                    card = message["space"]
                    if not card["name"].startswith(prefix):
                        continue
                    if message["event"] == "arrived" and self.watching:
                        stats.seen.setdefault(card["name"], []).append(time.monotonic())
                    async with self._cards:
                        self.spaces[card["name"]] = card["id"]
                        self._cards.notify_all()
                elif kind == "waiting-area":
                    # Patients who came before this dashboard opened are in its snapshot.
                    async with self._cards:
                        for card in message["spaces"]:
                            if card["name"].startswith(prefix):
                                self.spaces[card["name"]] = card["id"]
                        self._cards.notify_all()
                    if not opened.done():
                        opened.set_result(None)
                elif kind in ("joined", "error"):
                    if kind == "error":
                        stats.error(f"dashboard: {message.get('code')}")
                    await self._replies.put(message)
        except (WebSocketException, OSError):
            pass
        finally:
            if not self._closing:
                self.run.closed_by_server("dashboard", socket)

    async def space_of(self, name: str) -> str:
        """The space id of the patient called `name`, once its card has arrived."""
        async with self._cards:
            await asyncio.wait_for(self._cards.wait_for(lambda: name in self.spaces), WAIT)
        return self.spaces[name]

    async def join(self, space_id: str) -> str:
        """Press Join on a card; the call's id."""
        assert self.socket is not None
        async with self._join_lock:
            await self.socket.send({"type": "join", "space": space_id})
            reply = await asyncio.wait_for(self._replies.get(), WAIT)
        if reply["type"] != "joined":
            raise ConnectionError(f"join refused: {reply.get('code')}")
        return str(reply["call"])

    async def close(self) -> None:
        self._closing = True
        if self.socket is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await self.socket.close()
        if self._listening is not None:
            self._listening.cancel()


class Call:
    """A consultation of one clinician and P-1 patients."""

    def __init__(self, run: Run, member: Member, patients: list[Patient]) -> None:
        self.run = run
        self.member = member
        self.patients = patients
        self.peer = Peer(video_kbps=run.plan.video_kbps)
        self.call_id = ""
        self.socket: Socket | None = None
        self.asked_at: float | None = None
        self.finished = asyncio.Event()
        self._listening: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, desk: Dashboard) -> None:
        """Once its patients wait: Join the first, open the call page, add the others."""
        stats = self.run.stats
        try:
            await asyncio.gather(*(p.connected.wait() for p in self.patients))
            first, *others = self.patients
            space = await desk.space_of(first.name)
            self.asked_at = first.asked_at = time.monotonic()
            self.call_id = await desk.join(space)
            stats.calls_started += 1
            path = f"/clinics/{self.run.plan.clinic}/calls/{self.call_id}/ws"
            self.socket = await self.member.browser.socket(path)
            stats.call_sockets += 1
            await self.socket.send({"type": "media-state", "audio": True, "video": True})
            self._listening = asyncio.create_task(self._listen(self.socket))
            for patient in others:
                space = await desk.space_of(patient.name)
                patient.asked_at = time.monotonic()
                await self.socket.send({"type": "add-to-call", "space": space})
        except (TimeoutError, ConnectionError, OSError, WebSocketException) as error:
            stats.error(f"call not started ({str(error) or type(error).__name__})")

    async def _listen(self, socket: Socket) -> None:
        stats = self.run.stats
        try:
            async for message in socket.messages():
                kind = message.get("type")
                if kind == "media-ready":
                    await self.peer.offer_once(socket, message["node"])
                elif kind == "answer":
                    await self.peer.answer(message["sdp"])
                elif kind == "slots":
                    self.peer.slots = {s["slot"]: s["participant"] for s in message["slots"]}
                elif kind == "ended":
                    self.finished.set()
                    return
                elif kind == "error":
                    stats.error(f"call page: {message.get('code')}")
        except (WebSocketException, OSError):
            pass
        finally:
            if not self.finished.is_set() and not self._closing:
                self.run.closed_by_server("call", socket)
            self.finished.set()

    def participants(self) -> list[tuple[Peer, float | None]]:
        """Each participant's peer and when it was asked into the call."""
        return [(self.peer, self.asked_at), *((p.peer, p.asked_at) for p in self.patients)]

    async def end(self) -> None:
        """Press "End call" and wait until every page of the call has heard it ended."""
        if self.socket is None or self.finished.is_set():
            return
        with contextlib.suppress(WebSocketException, OSError, TimeoutError):
            await self.socket.send({"type": "end-call"})
            await asyncio.wait_for(
                asyncio.gather(self.finished.wait(), *(p.finished.wait() for p in self.patients)),
                WAIT,
            )

    async def close(self) -> None:
        self._closing = True
        await self.peer.close()
        if self.socket is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await self.socket.close()
        if self._listening is not None:
            self._listening.cancel()


@dataclass
class MediaFigures:
    """What one participant received over the measured window."""

    packets_per_second: float
    kbit_per_second: float
    slots_with_media: int
    setup_seconds: float | None
    video_setup_seconds: float | None


class Run:
    """One load test from start to report."""

    def __init__(self, plan: Plan, out: TextIO = sys.stderr) -> None:
        self.plan = plan
        self.out = out
        self.id = secrets.token_hex(3)
        self.stats = Stats()
        self.pool = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="loadtest-http")
        self.members = [Member(self, s) for s in plan.staff]
        self.patients: list[Patient] = []
        self.calls: list[Call] = []
        self.dashboards: list[Dashboard] = []
        self.started = time.monotonic()
        #: Where the run is, named in errors: "during the ramp", "while holding", "at the end".
        self.phase = "during the ramp"
        self._tasks: set[asyncio.Task[Any]] = set()
        #: RTP packets the calls' participants received in all, until the calls ended.
        self.packets_received = 0

    def closed_by_server(self, who: str, socket: Socket) -> None:
        """Count a socket the server ended unasked, with how and when."""
        reason = socket.close_reason()
        self.stats.error(f"{who} socket closed by the server ({reason}) {self.phase}")

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def execute(self) -> dict[str, Any]:
        """Run the plan, clean up, and return the report."""
        plan = self.plan
        if not plan.allow_remote and not loopback_only(plan.url):
            raise RemoteTarget(
                f"{plan.url} is not on this machine: a load test sends real load; give "
                "--allow-remote to aim it at a deployment elsewhere"
            )
        if loopback_only(plan.url):
            # aioice never gathers loopback addresses on its own.
            use_host_addresses(("127.0.0.1",))
        deadline = self.started + plan.duration
        progress = asyncio.create_task(self._progress())
        try:
            if plan.calls:
                # Encoded once, before anyone waits on it (a second or two of CPU).
                await asyncio.to_thread(video_clip, plan.video_kbps)
                await asyncio.to_thread(audio_clip)
            for member in self.members:
                await member.sign_in()
            await self._open_dashboards()
            await self._ramp(deadline)
            self.phase = "while holding"
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            measured_at = time.monotonic()
            media = self._media(measured_at)
            started = sum(1 for c in self.calls if c.call_id) * plan.participants
            if self._receiving() < started:
                missing = started - self._receiving()
                self.stats.errors["call participants not receiving every other's media"] = missing
        finally:
            progress.cancel()
            await self._clean_up()
            self.pool.shutdown(wait=False, cancel_futures=True)
        return self._report(media, measured_at)

    async def _open_dashboards(self) -> None:
        members = self.members
        for index in range(self.plan.dashboards):
            member = members[index % len(members)]
            dashboard = Dashboard(self, member, watching=True)
            member.dashboards.append(dashboard)
            self.dashboards.append(dashboard)
        await asyncio.gather(*(d.open() for d in self.dashboards))

    async def _ramp(self, deadline: float) -> None:
        """Patients enter at the plan's rate, the calls' patients spread among the waiting
        ones; a call starts as soon as its patients wait."""
        plan = self.plan
        due = [math.floor((k + 1) * plan.patients / (plan.calls + 1)) for k in range(plan.calls)]
        order: list[Patient] = []

        def add_call() -> None:
            first = len(order)
            patients = [Patient(self, first + i, True) for i in range(plan.participants - 1)]
            member = self.members[len(self.calls) % len(self.members)]
            self.calls.append(Call(self, member, patients))
            order.extend(patients)

        for waiting in range(plan.patients):
            while len(self.calls) < plan.calls and due[len(self.calls)] <= waiting:
                add_call()
            order.append(Patient(self, len(order), False))
        while len(self.calls) < plan.calls:
            add_call()
        self.patients = order
        starts = {id(c.patients[-1]): c for c in self.calls}
        ramp_start = time.monotonic()
        for position, patient in enumerate(order):
            at = ramp_start + position / plan.rate
            if at >= deadline:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            self._spawn(patient.arrive())
            call = starts.get(id(patient))
            if call is not None:
                self._spawn(call.start(await self._desk(call.member)))

    async def _desk(self, member: Member) -> Dashboard:
        """The dashboard a member presses Join on: one of theirs, or one opened for it."""
        if not member.dashboards:
            desk = Dashboard(self, member, watching=False)
            member.dashboards.append(desk)
            self.dashboards.append(desk)
            await desk.open()
        return member.dashboards[0]

    async def _clean_up(self) -> None:
        """End the calls, let waiting patients leave, close every socket; bounded."""

        self.phase = "at the end"

        async def everyone_leaves() -> None:
            await asyncio.gather(*(c.end() for c in self.calls))
            await asyncio.gather(*(p.leave() for p in self.patients if not p.in_call))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone_leaves(), CLEANUP)
        self.packets_received = sum(
            peer.totals()[0] for call in self.calls for peer, _ in call.participants()
        )
        for task in list(self._tasks):
            task.cancel()
        closing: list[Coroutine[Any, Any, None]] = [c.close() for c in self.calls]
        closing += [p.close() for p in self.patients]
        closing += [d.close() for d in self.dashboards]
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*(m.sign_out() for m in self.members), return_exceptions=True)

    def _media(self, now: float) -> list[MediaFigures]:
        figures = []
        for call in self.calls:
            for peer, asked_at in call.participants():
                first = peer.first_media_at()
                packets, octets = peer.totals()
                window = now - first if first is not None else 0.0
                video = peer.first_video_at()
                figures.append(
                    MediaFigures(
                        packets_per_second=packets / window if window > 0 else 0.0,
                        kbit_per_second=octets * 8 / 1000 / window if window > 0 else 0.0,
                        slots_with_media=sum(1 for c in peer.counts.values() if c.packets),
                        setup_seconds=first - asked_at if first and asked_at else None,
                        video_setup_seconds=video - asked_at if video and asked_at else None,
                    )
                )
        return figures

    def _receiving(self) -> int:
        others = self.plan.participants - 1
        return sum(
            1
            for call in self.calls
            for peer, _ in call.participants()
            if sum(1 for c in peer.counts.values() if c.packets) >= others
        )

    async def _progress(self) -> None:
        """One line a second on a terminal (rewritten in place), one every 5 s otherwise."""
        tty = self.out.isatty()
        while True:
            await asyncio.sleep(1.0 if tty else 5.0)
            line = self.progress_line()
            self.out.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
            self.out.flush()

    def progress_line(self) -> str:
        plan, stats = self.plan, self.stats
        people = plan.patients + plan.call_patients
        return (
            f"[{time.monotonic() - self.started:5.0f} s] "
            f"entered {len(stats.entry_seconds)}/{people}  "
            f"waiting {stats.patients_waiting}  "
            f"dashboards {stats.dashboards_open}/{plan.dashboards}  "
            f"calls {stats.calls_started}/{plan.calls}  "
            f"receiving media {self._receiving()}/{plan.calls * plan.participants}  "
            f"errors {sum(stats.errors.values()) + sum(stats.entry_refused.values())}"
        )

    def _report(self, media: list[MediaFigures], measured_at: float) -> dict[str, Any]:
        plan, stats = self.plan, self.stats
        watchers = plan.dashboards
        last_seen = [
            (max(times) - stats.arrivals[name]) * 1000
            for name, times in stats.seen.items()
            if len(times) == watchers and name in stats.arrivals
        ]
        setups = [m.setup_seconds * 1000 for m in media if m.setup_seconds is not None]
        video_setups = [
            m.video_setup_seconds * 1000 for m in media if m.video_setup_seconds is not None
        ]
        return {
            "target": plan.url,
            "clinic": plan.clinic,
            "run": self.id,
            "seconds": round(measured_at - self.started, 1),
            "patients": {
                "planned": plan.patients + plan.call_patients,
                "entered": len(stats.entry_seconds),
                "refused": dict(stats.entry_refused),
                "sockets": stats.patient_sockets,
                "left": stats.left,
                "ended": stats.ended,
            },
            "entry_ms": _spread([s * 1000 for s in stats.entry_seconds]),
            "dashboards": {
                "planned": plan.dashboards,
                "open": stats.dashboards_open,
                "opened_to_join": stats.desks,
                "arrivals_seen_by_all": len(last_seen),
            },
            "arrival_to_dashboard_ms": _spread(last_seen),
            "calls": {
                "planned": plan.calls,
                "started": stats.calls_started,
                "call_sockets": stats.call_sockets,
                "participants": len(media),
                "receiving_from_all_others": sum(
                    1 for m in media if m.slots_with_media >= plan.participants - 1
                ),
                "packets_received": self.packets_received,
            },
            "call_setup_ms": _spread(setups),
            "call_setup_video_ms": _spread(video_setups),
            "media_per_participant": {
                "packets_per_second": _spread([m.packets_per_second for m in media]),
                "kbit_per_second": _spread([m.kbit_per_second for m in media]),
            },
            "sign_ins": stats.sign_ins,
            "errors": dict(stats.errors),
        }


def _spread(values: list[float]) -> dict[str, float | int]:
    """Count, min, p50, p95, p99 and max of `values`."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))], 1)

    return {
        "count": len(ordered),
        "min": round(ordered[0], 1),
        "p50": round(statistics.median(ordered), 1),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as an operator reads it."""

    def spread(figures: dict[str, Any], unit: str) -> str:
        if not figures.get("count"):
            return "none measured"
        return (
            f"p50 {figures['p50']} / p95 {figures['p95']} / p99 {figures['p99']} / "
            f"max {figures['max']} {unit} ({figures['count']})"
        )

    patients, dashboards, calls = report["patients"], report["dashboards"], report["calls"]
    media = report["media_per_participant"]
    lines = [
        f"vidclinic loadtest {report['run']}: {report['target']} clinic {report['clinic']}, "
        f"{report['seconds']} s",
        f"  patients entered       {patients['entered']} of {patients['planned']} "
        f"(sockets {patients['sockets']}, left {patients['left']}, ended {patients['ended']})",
        f"  entry (form post)      {spread(report['entry_ms'], 'ms')}",
        f"  dashboards open        {dashboards['open']} of {dashboards['planned']}"
        f" (+{dashboards['opened_to_join']} opened to press Join)",
        f"  arrival → dashboard    {spread(report['arrival_to_dashboard_ms'], 'ms')}"
        f"  [last of the dashboards; seen by all: {dashboards['arrivals_seen_by_all']}]",
        f"  calls started          {calls['started']} of {calls['planned']}, "
        f"{calls['participants']} participants, {calls['receiving_from_all_others']} "
        "receiving media from every other",
        f"  call setup (any media) {spread(report['call_setup_ms'], 'ms')}",
        f"  call setup (video)     {spread(report['call_setup_video_ms'], 'ms')}",
        f"  media received         {spread(media['packets_per_second'], 'packets/s')}",
        f"                         {spread(media['kbit_per_second'], 'kbit/s')}",
    ]
    refused = patients["refused"]
    if refused:
        lines.append(f"  entries refused        {refused}")
    errors = report["errors"]
    lines.append(f"  errors                 {sum(errors.values())} {errors if errors else ''}")
    return "\n".join(lines)


def run(plan: Plan, out: TextIO = sys.stderr, json_path: str = "") -> int:
    """Run `plan`, print the report (and write it as JSON to `json_path`); 0 when nothing
    failed, 1 when anything did, 2 for a plan refused before it started."""
    try:
        report = asyncio.run(asyncio.wait_for(Run(plan, out).execute(), plan.duration + 120))
    except (PlanError, RemoteTarget) as refused:
        out.write(f"vidclinic loadtest: {refused}\n")
        return 2
    out.write("\n")
    print(format_report(report), flush=True)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    failures = sum(report["errors"].values()) + sum(report["patients"]["refused"].values())
    return 1 if failures else 0
