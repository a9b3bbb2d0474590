"""The `vidclinic` command: one subcommand per process type, plus setup chores.

Heavy imports happen inside each subcommand, so `vidclinic --help` is quick and gunicorn's
gevent workers patch the standard library before the web app imports it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import NoReturn

from shared.config import Settings, SettingsError


class OneLineParser(argparse.ArgumentParser):
    """Wrong arguments: one line saying what is wrong, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"vidclinic: error: {exc}") from None


def cmd_dev(args: argparse.Namespace) -> int:
    from shared.devserver import run_dev

    return run_dev(port=args.port)


def cmd_web(args: argparse.Namespace) -> int:
    from shared.webserver import serve

    serve(
        _settings(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        metrics_dir=args.metrics_dir,
        announce=not args.child,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    metrics_dir = ""
    if settings.worker_metrics_port:
        # Before prometheus_client is first imported: the pool processes forked later then
        # write their figures where the worker's metrics port reads them.
        from shared.metrics import MULTIPROC_VARIABLE

        metrics_dir = os.environ[MULTIPROC_VARIABLE] = tempfile.mkdtemp(
            prefix="vidclinic-worker-metrics-"
        )
        from workers.metrics import install

        install(settings)
    from workers.app import create_celery, log_as

    log_as(settings, "worker")
    argv = [*_quiet(settings), "worker", "--loglevel", settings.log_level]
    argv += ["--concurrency", str(args.concurrency)]
    try:
        create_celery(settings).worker_main([*argv, "--without-mingle", "--without-gossip"])
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _quiet(settings: Settings) -> list[str]:
    """Celery's start-up banner is printed, not logged: left out when lines must be JSON, and
    for anyone who asked for less than INFO (vidclinic dev, whose links it would bury)."""
    chatty = settings.log_level in ("DEBUG", "INFO")
    return ["--quiet"] if settings.log_format == "json" or not chatty else []


def cmd_beat(args: argparse.Namespace) -> int:
    from workers.app import create_celery, log_as

    settings = _settings()
    log_as(settings, "beat")
    schedule = args.schedule or os.path.join(tempfile.gettempdir(), "vidclinic-beat-schedule")
    create_celery(settings).start(
        [*_quiet(settings), "beat", "--loglevel", settings.log_level, "--schedule", schedule]
    )
    return 0


def cmd_media(args: argparse.Namespace) -> int:
    import logging
    import secrets
    import socket

    from media.supervisor import default_processes, supervise
    from shared import logs

    settings = _settings()
    logs.configure(settings, "media")
    processes = args.processes or default_processes()
    if processes > 1:
        base = settings.media_node_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
        return supervise(processes, base, settings.media_metrics_port)
    from media.node import run

    logging.getLogger("aioice").setLevel(logging.WARNING)
    run(settings)
    return 0


def cmd_media_drain(args: argparse.Namespace) -> int:
    import redis

    from shared.live import LiveState

    settings = _settings()
    live = LiveState(redis.Redis.from_url(settings.redis_url, decode_responses=True))
    unknown = []
    for node_id in args.nodes:
        if live.drain(node_id):
            calls = len(live.node_calls(node_id))
            print(f"{node_id}: draining; it takes no new calls and exits when its {calls} end")
        else:
            unknown.append(node_id)
    if unknown:
        raise SystemExit(f"vidclinic: error: no live media node {', '.join(unknown)}")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from shared.loadtest.runner import Plan, PlanError, Staff, run

    emails = args.staff_email or [
        e.strip() for e in os.environ.get("VIDCLINIC_LOADTEST_EMAIL", "").split(",") if e.strip()
    ]
    password = args.staff_password or os.environ.get("VIDCLINIC_LOADTEST_PASSWORD", "")
    if emails and not password:
        raise SystemExit(
            "vidclinic: error: the staff accounts need a password: VIDCLINIC_LOADTEST_PASSWORD "
            "(or --staff-password)"
        )
    answers = []
    for answer in args.answer:
        key, sep, value = answer.partition("=")
        if not sep:
            raise SystemExit(f"vidclinic: error: --answer {answer!r} is not KEY=VALUE")
        answers.append((key, value))
    try:
        plan = Plan(
            url=args.url,
            clinic=args.clinic,
            patients=args.patients,
            dashboards=args.dashboards,
            calls=args.calls,
            participants=args.participants,
            rate=args.rate,
            duration=args.duration,
            staff=tuple(Staff(e, password) for e in emails),
            sockets_per_user=args.sockets_per_user,
            video_kbps=args.video_kbps,
            answers=tuple(answers),
            allow_remote=args.allow_remote,
        )
    except PlanError as refused:
        raise SystemExit(f"vidclinic: error: {refused}") from None
    return run(plan, json_path=args.json or "")


def _database_url() -> str:
    return os.environ.get("DATABASE_URL") or "sqlite:///var/vidclinic.sqlite3"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from shared.db import upgrade

    upgrade(_database_url())
    print("database is up to date")
    return 0


def cmd_create_clinic(args: argparse.Namespace) -> int:
    from shared.accounts import AccountError, create_clinic
    from shared.db import make_engine, make_sessionmaker

    sessions = make_sessionmaker(make_engine(_database_url()))
    try:
        with sessions.begin() as session:
            clinic = create_clinic(session, args.slug, args.name)
            print(f"created clinic {clinic.slug} (patient link: /c/{clinic.slug})")
    except AccountError as exc:
        raise SystemExit(f"vidclinic: error: {exc}") from None
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    from shared.accounts import AccountError, create_user
    from shared.db import make_engine, make_sessionmaker
    from shared.models import Role

    if args.role and not args.clinic:
        raise SystemExit("vidclinic: error: --role needs --clinic")
    sessions = make_sessionmaker(make_engine(_database_url()))
    try:
        with sessions.begin() as session:
            user = create_user(
                session,
                args.email,
                args.password,
                args.name,
                args.clinic,
                Role(args.role or "clinician"),
            )
            print(f"created user {user.email}")
    except AccountError as exc:
        raise SystemExit(f"vidclinic: error: {exc}") from None
    return 0


def _change_membership(args: argparse.Namespace, role: str | None) -> None:
    """Remove a member (`role` None) or set their role, then close their open pages."""
    import redis

    from shared.accounts import AccountError, change_role, remove_member
    from shared.db import make_engine, make_sessionmaker
    from shared.models import Role

    settings = _settings()
    sessions = make_sessionmaker(make_engine(settings.database_url))
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        with sessions() as session:
            if role is None:
                remove_member(session, client, args.clinic, args.email)
            else:
                change_role(session, client, args.clinic, args.email, Role(role))
    except AccountError as exc:
        raise SystemExit(f"vidclinic: error: {exc}") from None
    except redis.RedisError as exc:
        raise SystemExit(
            f"vidclinic: error: the change is saved, but the member's open pages could not be "
            f"closed ({exc}); each is refused at its next action"
        ) from None
    finally:
        client.close()


def cmd_remove_member(args: argparse.Namespace) -> int:
    _change_membership(args, None)
    print(f"removed {args.email} from {args.clinic}; their open pages are closed")
    return 0


def cmd_set_role(args: argparse.Namespace) -> int:
    _change_membership(args, args.role)
    print(f"{args.email} is now {args.role} in {args.clinic}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vidclinic", description="Telehealth video consultations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    dev = sub.add_parser(
        "dev", help="run everything on this machine: embedded Redis, SQLite, a demo clinic"
    )
    dev.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8000),
        help="HTTP port (default 8000 or $PORT)",
    )
    dev.set_defaults(func=cmd_dev)

    web = sub.add_parser("web", help="serve pages, API and sockets (gunicorn, gevent worker)")
    web.add_argument(
        "--host",
        default=os.environ.get("HOST", "127.0.0.1"),
        help="address to bind (default 127.0.0.1 or $HOST)",
    )
    web.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8000),
        help="port (default 8000 or $PORT)",
    )
    web.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 1),
        help="worker processes (default 1 or $WEB_CONCURRENCY)",
    )
    web.add_argument(
        "--metrics-dir",
        help="folder the web processes share their metrics in (default: a fresh one in the "
        "temp folder, removed at exit)",
    )
    # One of the web processes of a `vidclinic web --workers N`: the parent said it all.
    web.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser(
        "worker", help="run a Celery worker (media allocation, notifications, housekeeping)"
    )
    worker.add_argument("--concurrency", type=int, default=2, help="task processes (default 2)")
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="run the periodic scheduler (exactly one per deployment)")
    beat.add_argument(
        "--schedule", help="file beat keeps its state in (default: in the temp folder)"
    )
    beat.set_defaults(func=cmd_beat)

    media = sub.add_parser("media", help="run media nodes (one process per core)")
    media.add_argument(
        "--processes",
        type=int,
        default=0,
        help="media node processes to run, each its own node (default: one per core this "
        "process may use); ids <VIDCLINIC_MEDIA_NODE_ID or host name>-1 … -N",
    )
    media.set_defaults(func=cmd_media)
    media_sub = media.add_subparsers(dest="media_command", parser_class=OneLineParser)
    drain = media_sub.add_parser(
        "drain", help="stop placing calls on media nodes; each exits once its calls have ended"
    )
    drain.add_argument("nodes", nargs="+", metavar="node", help="a media node's id")
    drain.set_defaults(func=cmd_media_drain)

    load = sub.add_parser(
        "loadtest",
        help="simulate patients, dashboards and calls against a running deployment",
        description="Simulate waiting patients, signed-in dashboards and calls with synthetic "
        "media against a running deployment, through its pages and sockets as browsers use "
        "them; print a live line and a report, clean up, and stop after --duration. Staff "
        "accounts: --staff-email (repeatable) or VIDCLINIC_LOADTEST_EMAIL (comma-separated), "
        "the password in VIDCLINIC_LOADTEST_PASSWORD (or --staff-password).",
    )
    load.add_argument("url", help="the deployment's address, e.g. http://127.0.0.1:8000")
    load.add_argument("--clinic", default="demo", help="clinic slug (default demo)")
    load.add_argument("--patients", type=int, default=20, help="waiting patients (default 20)")
    load.add_argument("--dashboards", type=int, default=0, help="open dashboards (default 0)")
    load.add_argument("--calls", type=int, default=0, help="consultations (default 0)")
    load.add_argument(
        "--participants",
        type=int,
        default=2,
        help="people in each call: a clinician and the rest patients (2-6, default 2)",
    )
    load.add_argument(
        "--rate", type=float, default=5, help="patients entering per second (default 5)"
    )
    load.add_argument(
        "--duration",
        type=float,
        default=60,
        help="seconds until everyone leaves, ramp included (default 60, at most 3600)",
    )
    load.add_argument(
        "--staff-email", action="append", default=[], help="a staff account (repeatable)"
    )
    load.add_argument(
        "--staff-password", help="the staff accounts' password (VIDCLINIC_LOADTEST_PASSWORD)"
    )
    load.add_argument(
        "--sockets-per-user",
        type=int,
        default=8,
        help="the deployment's VIDCLINIC_SOCKETS_PER_USER (default 8)",
    )
    load.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an answer to one of the clinic's own entry questions (repeatable)",
    )
    load.add_argument(
        "--video-kbps", type=int, default=500, help="each participant's video (default 500)"
    )
    load.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    load.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target that is not on this machine (loopback only without it)",
    )
    load.set_defaults(func=cmd_loadtest)

    db = sub.add_parser("db", help="database chores")
    db_sub = db.add_subparsers(dest="db_command", required=True, parser_class=OneLineParser)
    db_sub.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    clinic = sub.add_parser("create-clinic", help="create a clinic")
    clinic.add_argument("--slug", required=True, help="short name in the patient link /c/<slug>")
    clinic.add_argument("--name", required=True, help="the clinic's name as patients see it")
    clinic.set_defaults(func=cmd_create_clinic)

    user = sub.add_parser("create-user", help="create a team member")
    user.add_argument("--email", required=True)
    user.add_argument("--password", required=True)
    user.add_argument("--name", required=True, help="display name")
    user.add_argument("--clinic", help="slug of the clinic to add them to")
    user.add_argument(
        "--role", choices=["admin", "clinician"], help="role in that clinic (default clinician)"
    )
    user.set_defaults(func=cmd_create_user)

    remove = sub.add_parser(
        "remove-member", help="remove a team member from a clinic and close their open pages"
    )
    remove.add_argument("--clinic", required=True, help="slug of the clinic")
    remove.add_argument("--email", required=True, help="the member's email")
    remove.set_defaults(func=cmd_remove_member)

    role = sub.add_parser(
        "set-role", help="change a team member's role in a clinic (their open pages reconnect)"
    )
    role.add_argument("--clinic", required=True, help="slug of the clinic")
    role.add_argument("--email", required=True, help="the member's email")
    role.add_argument("--role", required=True, choices=["admin", "clinician"], help="the new role")
    role.set_defaults(func=cmd_set_role)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
