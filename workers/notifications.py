"""Sending email and SMS: retried with back-off, and sent once however often a task is delivered.

Tasks are acknowledged late, so a killed worker's task runs again, and a broker may deliver one
twice. Each delivery therefore carries an id: a Redis key marks it sent (a repeat sends
nothing), and a short lock keeps two attempts from sending at the same moment. The message
text travels only in the task (it may hold a link's token); SQL keeps where it went and how it
went (`Delivery`), which the member sees as "Queued", "Sent" or "Failed: …".
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable

from celery import shared_task
from sqlalchemy import select

from shared import keys
from shared.accounts import user_by_email
from shared.models import ArrivalEmails, Delivery, DeliveryState, Membership, User
from shared.notifications import DeliveryError, Email, email_backend, sms_backend
from shared.team import start_reset
from workers.app import (
    ARRIVAL_EMAILS,
    REQUEST_PASSWORD_RESET,
    SEND_EMAIL,
    SEND_SMS,
    VidclinicTask,
)

log = logging.getLogger(__name__)

#: The longest wait between two attempts at a send, in seconds.
MAX_BACKOFF = 300


@shared_task(name=SEND_EMAIL, bind=True)
def send_email(task: VidclinicTask, delivery_id: int, to: str, subject: str, text: str) -> str:
    backend = email_backend(task.services.settings)
    return _deliver(task, delivery_id, lambda key: backend.send(Email(to, subject, text), key))


@shared_task(name=SEND_SMS, bind=True)
def send_sms(task: VidclinicTask, delivery_id: int, to: str, text: str) -> str:
    backend = sms_backend(task.services.settings)
    return _deliver(task, delivery_id, lambda key: backend.send(to, text, key))


@shared_task(name=REQUEST_PASSWORD_RESET, bind=True)
def request_password_reset(
    task: VidclinicTask, email: str, subject: str, text: str, placeholder: str
) -> str:
    """Send a reset link if the email has an account; nothing otherwise (the web, which answers
    the same either way, never learns which)."""
    moment = dt.datetime.now(dt.UTC)
    with task.services.sessions.begin() as session:
        user = user_by_email(session, email)
        if user is None:
            return "unknown"
        token = start_reset(session, user)
        delivery = Delivery(
            channel="email",
            purpose="password-reset",
            recipient=user.email,
            state=DeliveryState.QUEUED,
            error="",
            created_at=moment,
            updated_at=moment,
        )
        session.add(delivery)
        session.flush()
        delivery_id, recipient = delivery.id, user.email
    send_email.delay(delivery_id, recipient, subject, text.replace(placeholder, token))
    return "sent"


@shared_task(name=ARRIVAL_EMAILS, bind=True)
def arrival_emails(task: VidclinicTask, clinic_id: int, subject: str, text: str) -> int:
    """Email the clinic's members who asked to hear of arrivals; at most one email per clinic
    per member every ARRIVAL_EMAIL_GAP seconds. Never a word about who the patient is."""
    redis = task.services.live.redis
    moment = dt.datetime.now(dt.UTC)
    queued: list[tuple[int, str]] = []
    with task.services.sessions.begin() as session:
        members = session.scalars(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .join(ArrivalEmails, ArrivalEmails.user_id == User.id)
            .where(Membership.clinic_id == clinic_id)
        ).all()
        for member in members:
            gap = keys.arrival_email(clinic_id, member.id)
            if not redis.set(gap, "1", nx=True, ex=keys.ARRIVAL_EMAIL_GAP):
                continue
            delivery = Delivery(
                clinic_id=clinic_id,
                channel="email",
                purpose="arrival",
                recipient=member.email,
                state=DeliveryState.QUEUED,
                error="",
                created_at=moment,
                updated_at=moment,
            )
            session.add(delivery)
            session.flush()
            queued.append((delivery.id, member.email))
    for delivery_id, email in queued:
        send_email.delay(delivery_id, email, subject, text)
    return len(queued)


def _deliver(task: VidclinicTask, delivery_id: int, send: Callable[[str], None]) -> str:
    """Send once; returns what happened (`sent`, `already-sent`, `failed`)."""
    redis, settings = task.services.live.redis, task.services.settings
    sent_key, lock_key = keys.delivery_sent(delivery_id), keys.delivery_sending(delivery_id)
    if redis.exists(sent_key):
        _record(task, delivery_id, DeliveryState.SENT)
        return "already-sent"
    lock_seconds = 2 * settings.send_timeout
    if not redis.set(lock_key, task.request.id or "-", nx=True, ex=lock_seconds):
        # Another attempt is sending right now, or died sending: look again once its lock
        # has lapsed.
        raise task.retry(countdown=lock_seconds, max_retries=settings.send_attempts + 10)
    try:
        send(f"vidclinic-delivery-{delivery_id}")
    except DeliveryError as failed:
        redis.delete(lock_key)
        if failed.permanent or task.request.retries + 1 >= settings.send_attempts:
            log.warning("delivery %s failed: %s %s", delivery_id, failed, failed.detail)
            _record(task, delivery_id, DeliveryState.FAILED, failed.stored)
            return "failed"
        _record(task, delivery_id, DeliveryState.QUEUED, failed.stored)
        delay = settings.send_retry_delay * 2**task.request.retries
        backoff = min(MAX_BACKOFF, delay) * random.uniform(0.8, 1.2)
        raise task.retry(countdown=backoff, max_retries=settings.send_attempts) from None
    redis.set(sent_key, "1", ex=keys.DELIVERY_SENT_TTL)
    redis.delete(lock_key)
    _record(task, delivery_id, DeliveryState.SENT)
    return "sent"


def _record(task: VidclinicTask, delivery_id: int, state: DeliveryState, error: str = "") -> None:
    with task.services.sessions.begin() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is not None:
            delivery.state = state
            delivery.error = error[:200]
            delivery.updated_at = dt.datetime.now(dt.UTC)
