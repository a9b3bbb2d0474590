"""Queueing email and SMS from the web: a Delivery row, committed, then the sending task.

The task is sent only after the commit, so a worker never looks for a row that is not there;
the message text (which may hold a link's token) goes only into the task.
"""

from __future__ import annotations

import datetime as dt
import re

from flask import url_for
from marshmallow import ValidationError, validate
from sqlalchemy.orm import Session

from shared.models import Delivery, DeliveryState, GuestLink, Room, User
from shared.notifications import FailureReason
from shared.rooms import room_title
from web.i18n import gettext as _
from web.services import Services
from workers.app import SEND_EMAIL, SEND_SMS

PHONE = re.compile(r"^\+?[0-9 ()\-.]{7,24}$")


def recipient_for(channel: str, to: str) -> tuple[str, str | None]:
    """The address to send to, normalised, or a message saying what is wrong with it."""
    if channel == "email":
        try:
            validate.Email()(to)
        except ValidationError:
            return to, _("Enter an email address like name@example.org.")
        return to, None
    digits = "".join(c for c in to if c.isdigit())
    if not PHONE.match(to) or not 7 <= len(digits) <= 15:
        return to, _("Enter a phone number of 7 to 15 digits, like +380 44 123 4567.")
    return ("+" if to.startswith("+") else "") + digits, None


def failure_text(error: str) -> str:
    """Why a send failed, in the member's language, from what the delivery keeps (a reason's
    code and the server's answer); anything else is shown as it was kept."""
    code, _space, status = error.partition(" ")
    if code == FailureReason.ADDRESS_REFUSED:
        return _("the mail server refused the address")
    if code == FailureReason.MAIL_SERVER_ANSWERED:
        return _("the mail server answered %(status)s", status=status)
    if code == FailureReason.MAIL_SERVER_UNREACHABLE:
        return _("the mail server could not be reached")
    if code == FailureReason.SMS_PROVIDER_ANSWERED:
        return _("the SMS provider answered %(status)s", status=status)
    if code == FailureReason.SMS_PROVIDER_UNREACHABLE:
        return _("the SMS provider could not be reached")
    return error


def queue_guest_link(
    session: Session,
    room: Room,
    link: GuestLink,
    sender: User,
    channel: str,
    recipient: str,
    token: str,
) -> Delivery:
    """Send a guest link to `recipient`; commits the session."""
    url = url_for("guests.guest_entry", token=token, _external=True)
    clinic = room.clinic.name
    until = link.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    text = _(
        "%(name)s invites you to a video meeting (%(room)s, %(clinic)s).\n"
        "Join here: %(url)s\nThe link works until %(until)s.",
        name=sender.display_name,
        room=room_title(room),
        clinic=clinic,
        url=url,
        until=until,
    )
    subject = _("Video meeting at %(clinic)s", clinic=clinic)
    return queue(
        session, channel, "guest-link", recipient, subject, text, room.clinic_id, link, sender
    )


def queue(
    session: Session,
    channel: str,
    purpose: str,
    recipient: str,
    subject: str,
    text: str,
    clinic_id: int | None = None,
    link: GuestLink | None = None,
    sender: User | None = None,
) -> Delivery:
    """Record a delivery, commit, and hand it to a worker."""
    moment = dt.datetime.now(dt.UTC)
    delivery = Delivery(
        clinic_id=clinic_id,
        guest_link_id=link.id if link else None,
        channel=channel,
        purpose=purpose,
        recipient=recipient,
        state=DeliveryState.QUEUED,
        error="",
        created_by=sender.id if sender else None,
        created_at=moment,
        updated_at=moment,
    )
    session.add(delivery)
    session.commit()
    celery = Services.current().celery
    if channel == "email":
        celery.send_task(SEND_EMAIL, args=[delivery.id, recipient, subject, text])
    else:
        celery.send_task(SEND_SMS, args=[delivery.id, recipient, text])
    return delivery
