"""Slowing down floods and guessing: patient entries and pre-call checks per minute, and sign-in
back-off.

Every subject is stored as a keyed digest (HMAC with the secret key): a Redis dump names no email
address or client address, and nobody without the secret can tell which key is whose.

Sign-in never locks an account: attempts are counted per account *and address network* and per
address network, and past a few free attempts each one waits twice as long as the last. A browser
that signed in to the account before carries a signed "known device" cookie; its attempts are
counted for that device alone, so a stranger guessing the account's password (or flooding its
address) never stops its owner signing in from their own browser.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time

from redis import Redis

from shared import keys
from shared.errors import ChecksRateLimited, EntryRateLimited, TooManyFailedSignIns

#: An address network may try this many times as often as one account from it (a clinic's
#: team often shares one address).
NETWORK_FACTOR = 10
#: Seconds the first delay lasts once the free attempts are used up; each later one doubles.
FIRST_DELAY = 30
#: Seconds the delay between attempts grows to at most.
LONGEST_DELAY = 15 * 60
#: IPv6 hosts get a /64 each: one client may use every address in it.
IPV6_PREFIX = 64

# A counter in a fixed window; written for Redis 6.2 (the embedded one), which lacks EXPIRE NX.
_COUNT_IN_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""

# KEYS: the subjects' hashes. ARGV: now, first delay, longest delay, memory, then each subject's
# free attempts. Refuses (returning the seconds to wait) while any subject must wait; otherwise
# counts the attempt for every subject before the password is checked, so parallel attempts
# cannot slip past, and makes the next one wait once a subject's free attempts are used up.
_BACK_OFF = """
local now = tonumber(ARGV[1])
local wait = 0
for _, key in ipairs(KEYS) do
  local next_at = tonumber(redis.call('HGET', key, 'next_at') or '0')
  if next_at - now > wait then wait = next_at - now end
end
if wait > 0 then return math.ceil(wait) end
for i, key in ipairs(KEYS) do
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  local free = tonumber(ARGV[4 + i])
  if attempts >= free then
    local delay = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (attempts - free))
    redis.call('HSET', key, 'next_at', tostring(now + delay))
  end
  redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""


def client_network(address: str) -> str:
    """The network one client controls: an IPv4 address itself, an IPv6 address's /64.

    An IPv6 host is routinely given a whole /64 and can pick a fresh address from it for every
    request; counting per address would let it multiply its limits by 2**64.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


class Throttle:
    """Rate limits and back-off kept in Redis, shared by every web process."""

    def __init__(self, redis: Redis, secret: str) -> None:
        self.redis = redis
        self._secret = secret.encode()
        self._count_in_window = redis.register_script(_COUNT_IN_WINDOW)
        self._back_off = redis.register_script(_BACK_OFF)

    def digest(self, *parts: str) -> str:
        """The keyed digest a subject is stored under."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def check_entry_rate(
        self, address: str, clinic_id: int, per_network: int, per_clinic: int
    ) -> None:
        """Count one patient entry; raises EntryRateLimited past either limit this minute.

        The clinic's count only moves once the address network's allows the entry, so one
        client over its own limit cannot use up the whole clinic's.
        """
        subjects = (
            (self.digest("entry-network", client_network(address)), per_network),
            (self.digest("entry-clinic", str(clinic_id)), per_clinic),
        )
        for subject, limit in subjects:
            count, ttl = self._count_in_window(
                keys=[keys.entry_rate(subject)], args=[keys.ENTRY_RATE_WINDOW]
            )
            if count > limit:
                raise EntryRateLimited(retry_after=max(int(ttl), 1))

    def check_precall_rate(self, address: str, per_network: int) -> None:
        """Count one pre-call check; raises ChecksRateLimited past the limit this minute."""
        subject = self.digest("check-network", client_network(address))
        count, ttl = self._count_in_window(
            keys=[keys.check_rate(subject)], args=[keys.CHECK_RATE_WINDOW]
        )
        if count > per_network:
            raise ChecksRateLimited(retry_after=max(int(ttl), 1))

    def begin_sign_in(self, email: str, address: str, free: int, device: str | None) -> None:
        """Count a sign-in attempt before the password is checked; raises TooManyFailedSignIns
        while the attempt must wait.

        `device` is the id of a valid known-device cookie for this account, if the browser sent
        one: its attempts count against that device only. Otherwise they count against the
        account from this address network (`free` attempts before the delays start) and against
        the network (NETWORK_FACTOR times as many).
        """
        limits = self._subjects(email, address, device)
        free_attempts = [free if kind != "network" else free * NETWORK_FACTOR for kind in limits]
        wait = self._back_off(
            keys=[keys.login_failures(subject) for subject in limits.values()],
            args=[time.time(), FIRST_DELAY, LONGEST_DELAY, keys.SIGN_IN_MEMORY, *free_attempts],
        )
        if int(wait) > 0:
            raise TooManyFailedSignIns(retry_after=int(wait))

    def sign_in_succeeded(self, email: str, address: str, device: str | None) -> None:
        """Forget the failures of the account from here (or of the device), and take back the
        network's count of this attempt."""
        limits = self._subjects(email, address, device)
        pipe = self.redis.pipeline()
        for kind, subject in limits.items():
            if kind == "network":
                pipe.hincrby(keys.login_failures(subject), "attempts", -1)
                pipe.expire(keys.login_failures(subject), keys.SIGN_IN_MEMORY)
            else:
                pipe.delete(keys.login_failures(subject))
        pipe.execute()

    def _subjects(self, email: str, address: str, device: str | None) -> dict[str, str]:
        if device is not None:
            return {"device": self.digest("sign-in-device", device)}
        network = client_network(address)
        return {
            "account": self.digest("sign-in-account", email.strip().lower(), network),
            "network": self.digest("sign-in-network", network),
        }
