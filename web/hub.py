"""One Redis pub/sub connection per web process, shared by every socket the process serves.

A socket greenlet per connection holding its own pub/sub connection would cost Redis a client
per open page; the hub keeps one, subscribes to a channel while anyone listens, and hands each
message to the listeners' own queues so one slow browser never holds up the others.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from redis import Redis, RedisError

log = logging.getLogger(__name__)

#: Called with (channel, data) for each message; (channel, None) when the connection to Redis
#: was lost and messages may have been missed, so the listener must resynchronise.
Listener = Callable[[str, str | None], None]


#: Stands for a confirmed subscription: one set event for all of them rather than one each.
_CONFIRMED = threading.Event()
_CONFIRMED.set()


class SubscribeTimeout(RedisError):
    """Redis did not confirm a subscription in time."""


class ChannelHub:
    """Fans the messages of one pub/sub connection out to many listeners.

    Subscribing returns only once Redis has confirmed the subscription, so a caller that
    subscribes and then reads state cannot miss a change published in between.
    """

    def __init__(self, redis: Redis, confirm_timeout: float = 5.0) -> None:
        self._redis = redis
        self._confirm_timeout = confirm_timeout
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}
        self._confirmed: dict[str, threading.Event] = {}
        self._pubsub = redis.pubsub()
        self._reader: threading.Thread | None = None

    def subscribe(self, channel: str, listener: Listener) -> None:
        """Deliver the channel's messages to `listener` from now on.

        If the connection is lost before Redis confirms, the listener hears (channel, None), as
        every listener does then, and this returns.
        """
        with self._lock:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="channel-hub", daemon=True)
                self._reader.start()
            if not self._listeners and not self._pubsub.subscribed:
                # Nothing reads a connection with no subscriptions, so one left idle may have
                # died unnoticed (Redis restarted meanwhile): a SUBSCRIBE written into it is
                # never confirmed. The pool checks the connection it hands out instead.
                self._pubsub.reset()
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = threading.Event()
                self._pubsub.subscribe(channel)  # raises while Redis is away: nothing recorded
                self._confirmed[channel] = confirmed
            self._listeners.setdefault(channel, set()).add(listener)
        if not confirmed.wait(self._confirm_timeout):
            self.unsubscribe(channel, listener)
            raise SubscribeTimeout(f"no confirmation for {channel}")

    def unsubscribe(self, channel: str, listener: Listener) -> None:
        """Stop delivering to `listener`; the last one to go unsubscribes the process."""
        with self._lock:
            listeners = self._listeners.get(channel)
            if listeners is None or listener not in listeners:
                return
            listeners.discard(listener)
            if not listeners:
                del self._listeners[channel]
                del self._confirmed[channel]
                # On a broken connection the reader notices and resets everything anyway.
                with contextlib.suppress(RedisError):
                    self._pubsub.unsubscribe(channel)

    def _read(self) -> None:
        while True:
            if not self._pubsub.subscribed:
                time.sleep(0.02)
                continue
            try:
                item = self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError, ValueError) as exc:
                log.warning("pub/sub connection lost: %s", exc)
                self._reset()
                continue
            if item is None:
                continue
            channel = item["channel"]
            if item["type"] == "subscribe":
                with self._lock:
                    confirmed = self._confirmed.get(channel)
                    if confirmed is not None:
                        # Later subscribers need not wait; nobody needs this event any more.
                        self._confirmed[channel] = _CONFIRMED
                if confirmed is not None:
                    confirmed.set()
            elif item["type"] == "message":
                with self._lock:
                    listeners = tuple(self._listeners.get(channel, ()))
                for listener in listeners:
                    listener(channel, item["data"])

    def _reset(self) -> None:
        """Drop every subscription and tell the listeners; they subscribe again as they resync."""
        with self._lock:
            lost = [(c, tuple(ls)) for c, ls in self._listeners.items()]
            self._listeners.clear()
            pending = list(self._confirmed.values())
            self._confirmed.clear()
            with contextlib.suppress(RedisError):
                self._pubsub.close()
            self._pubsub = self._redis.pubsub()
        for channel, listeners in lost:
            for listener in listeners:
                listener(channel, None)
        for confirmed in pending:
            confirmed.set()  # a subscriber still waiting returns: its listener has heard
        time.sleep(0.5)
