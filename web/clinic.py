"""Who may see a clinic's pages, and the clinic's left-hand menu.

Every clinic page asks `member_clinic` (any member) or `admin_clinic` (clinic admins only);
both remember the clinic and the member's role for the request, so the menu shows what this
member may open: the waiting area, the meeting rooms, their own user room, and for admins the
team, the settings and the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, abort, g, request, url_for
from flask_login import current_user

from shared.accounts import clinic_by_slug, membership
from shared.models import Clinic, Role
from shared.rooms import user_room
from web.i18n import gettext as _
from web.services import Services


@dataclass(frozen=True)
class MenuItem:
    label: str
    url: str
    current: bool


def member_clinic(slug: str) -> Clinic:
    """The clinic at `slug` if the signed-in user belongs to it; 404 if none, 403 if not theirs."""
    session = Services.db()
    clinic = clinic_by_slug(session, slug)
    if clinic is None:
        abort(404)
    member = (
        membership(session, current_user.id, clinic.id) if current_user.is_authenticated else None
    )
    if member is None:
        abort(403)
    g.clinic, g.role = clinic, member.role
    return clinic


def admin_clinic(slug: str) -> Clinic:
    """The clinic at `slug` if the signed-in user is one of its admins; 403 otherwise."""
    clinic = member_clinic(slug)
    if g.role != Role.ADMIN:
        abort(403)
    return clinic


def is_admin() -> bool:
    return g.get("role") == Role.ADMIN


def clinic_menu() -> list[MenuItem]:
    """The menu of the clinic this request is about (empty outside a clinic)."""
    clinic: Clinic | None = g.get("clinic")
    if clinic is None:
        return []
    slug = clinic.slug
    items = [
        (_("Waiting area"), url_for("dashboard.waiting_area", slug=slug)),
        (_("Meeting rooms"), url_for("rooms.room_list", slug=slug)),
    ]
    own = user_room(Services.db(), clinic.id, current_user.id)
    if own is not None:
        label = _("%(name)s (your room)", name=current_user.display_name)
        items.append((label, url_for("rooms.room_page", slug=slug, key=own.key)))
    if is_admin():
        items += [
            (_("Team"), url_for("admin.team_page", slug=slug)),
            (_("Settings"), url_for("admin.settings_page", slug=slug)),
            (_("Audit log"), url_for("admin.audit_page", slug=slug)),
        ]
    return [MenuItem(label, url, request.path == url) for label, url in items]


def init_app(app: Flask) -> None:
    @app.context_processor
    def _menu() -> dict[str, object]:
        return {"clinic_menu": clinic_menu}
