"""The clinics and team members every test system starts with."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from shared.accounts import create_clinic, create_user
from shared.db import make_engine, make_sessionmaker, upgrade
from shared.models import Clinic, Membership, Role


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    name: str


CLINICIAN = Account("clinician@demo.example", "clinician-password-1", "Dr Olena Kovalenko")
SECOND_CLINICIAN = Account("second@demo.example", "second-password-12", "Dr Taras Shevchuk")
LOCKABLE = Account("lockable@demo.example", "lockable-password-1", "Dr Lockable")
BURST = Account("burst@demo.example", "burst-password-12", "Dr Burst")
REMOVABLE = Account("removable@demo.example", "removable-password", "Dr Removable")
OTHER_CLINICIAN = Account("other@other.example", "other-password-123", "Dr Other Clinic")
ADMIN = Account("admin@demo.example", "admin-password-123", "Iryna Admin")
#: Members who only fill a room in the room tests.
FIFTH = Account("fifth@demo.example", "fifth-password-123", "Dr Fifth")
SIXTH = Account("sixth@demo.example", "sixth-password-123", "Dr Sixth")
SEVENTH = Account("seventh@demo.example", "seventh-password-1", "Dr Seventh")
#: The owner of the user room that the user-room tests fill with guests.
ROOM_OWNER = Account("room-owner@demo.example", "room-owner-password", "Dr Room Owner")
#: Members whom the Team page tests promote, remove or invite elsewhere.
RISER = Account("riser@demo.example", "riser-password-123", "Dr Riser")
LEAVER = Account("leaver@demo.example", "leaver-password-12", "Dr Leaver")
NEWCOMER = Account("newcomer@other.example", "newcomer-password", "Dr Newcomer")
#: A clinician of both clinics (transfers between them).
ROAMING = Account("roaming@demo.example", "roaming-password-1", "Dr Roaming")
DEPARTING = Account("departing@demo.example", "departing-password", "Dr Departing")
PROMOTED = Account("promoted@demo.example", "promoted-password-1", "Dr Promoted")
GUESSED = Account("guessed@demo.example", "guessed-password-12", "Dr Guessed")
MANY_TABS = Account("tabs@demo.example", "many-tabs-password", "Dr Many Tabs")
#: Whose password the tests of wrong and reused reset links try to change.
RESETTING = Account("resetting@demo.example", "resetting-password", "Dr Resetting")
#: Team members who each hold several open dashboards at once.
WATCHERS = tuple(
    Account(f"watcher{i}@demo.example", f"watcher-password-{i}", f"Dr Watcher {i}")
    for i in range(4)
)


def seed(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_sessionmaker(engine).begin() as session:
        create_clinic(session, "demo", "Demo Clinic")
        create_clinic(session, "other", "Other Clinic")
        # Entered only by the test of the per-clinic entry limit.
        create_clinic(session, "quiet", "Quiet Clinic")
        for account, clinic in (
            (CLINICIAN, "demo"),
            (SECOND_CLINICIAN, "demo"),
            (LOCKABLE, "demo"),
            (BURST, "demo"),
            (REMOVABLE, "demo"),
            (OTHER_CLINICIAN, "other"),
            (FIFTH, "demo"),
            (SIXTH, "demo"),
            (SEVENTH, "demo"),
            (ROOM_OWNER, "demo"),
            (RISER, "demo"),
            (LEAVER, "demo"),
            (NEWCOMER, "other"),
            (DEPARTING, "demo"),
            (PROMOTED, "demo"),
            (GUESSED, "demo"),
            (MANY_TABS, "demo"),
            (RESETTING, "demo"),
            *((watcher, "demo") for watcher in WATCHERS),
        ):
            create_user(
                session, account.email, account.password, account.name, clinic, Role.CLINICIAN
            )
        create_user(session, ADMIN.email, ADMIN.password, ADMIN.name, "demo", Role.ADMIN)
        roaming = create_user(
            session, ROAMING.email, ROAMING.password, ROAMING.name, "demo", Role.CLINICIAN
        )
        other = session.scalar(select(Clinic).where(Clinic.slug == "other"))
        assert other is not None
        session.add(Membership(user_id=roaming.id, clinic_id=other.id, role=Role.CLINICIAN))
    engine.dispose()


@dataclass(frozen=True)
class FreshClinic:
    """A clinic made by one test, with members of its own: nobody else's patients, records or
    settings reach it."""

    id: int
    slug: str
    members: tuple[Account, ...]


def fresh_clinic(
    database_url: str, slug: str, members: int = 1, admin: bool = False, **settings: object
) -> FreshClinic:
    """A new clinic `slug` with `members` clinicians of its own (the first its admin when
    `admin`) and these waiting-area settings (`show_estimate=True`, …), written straight to the
    database."""
    from shared.models import WaitingAreaSettings

    accounts = tuple(
        Account(f"{slug}-{i}@fresh.example", f"{slug}-password-{i}", f"Dr {slug.title()} {i}")
        for i in range(members)
    )
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            clinic = create_clinic(session, slug, f"{slug.title()} Clinic")
            for index, account in enumerate(accounts):
                role = Role.ADMIN if admin and index == 0 else Role.CLINICIAN
                create_user(session, account.email, account.password, account.name, slug, role)
            session.add(WaitingAreaSettings(clinic_id=clinic.id, **settings))
            clinic_id = clinic.id
    finally:
        engine.dispose()
    return FreshClinic(clinic_id, slug, accounts)
