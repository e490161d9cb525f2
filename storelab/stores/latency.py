"""A slow, lossy link in front of a backend: what a store far away feels like.

Every request waits one round trip, plus its payload over the link's bandwidth; a share of
requests can fail (before or after the far side acted, as a lost reply does) or time out.
Waiting is ``time.sleep``, which lets other threads run: concurrent uploads overlap their
round trips exactly as they would on a real link.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from storelab.errors import ConfigError
from storelab.stores.backends import ObjectBackend, TransientStoreError
from storelab.units import parse_size

__all__ = ["LinkProfile", "LatencyBackend", "parse_duration"]


def parse_duration(text: str) -> float:
    """Seconds from ``20ms``, ``1.5s``, ``250us`` or a bare number of seconds.

    >>> parse_duration("20ms"), parse_duration("1.5s"), parse_duration("0")
    (0.02, 1.5, 0.0)
    """
    value = text.strip().lower()
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("s", 1.0)):
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)], scale
            break
    else:
        factor = 1.0
    try:
        seconds = float(value) * factor
    except ValueError:
        raise ConfigError(f"not a duration: {text!r} (try 20ms, 1s)") from None
    if seconds < 0:
        raise ConfigError(f"a duration cannot be negative: {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """What the simulated link does to each request.

    >>> LinkProfile.parse(rtt="10ms", bandwidth="100MiB")
    LinkProfile(rtt=0.01, bandwidth=104857600, error_rate=0.0, timeout_rate=0.0, timeout=0.0, seed=0)
    """

    rtt: float = 0.0
    """Seconds of round trip per request."""
    bandwidth: int | None = None
    """Bytes per second for payloads (None: unlimited)."""
    error_rate: float = 0.0
    """Share of requests that fail with a transient error."""
    timeout_rate: float = 0.0
    """Share of requests that hang for ``timeout`` seconds, then fail."""
    timeout: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, rtt: str = "0", bandwidth: str | None = None, **rest: Any) -> LinkProfile:
        return cls(rtt=parse_duration(rtt), bandwidth=parse_size(bandwidth) if bandwidth else None, **rest)


class LatencyBackend:
    """``inner`` behind a :class:`LinkProfile`.

    >>> from storelab.stores.backends import ObstoreBackend
    >>> slow = LatencyBackend(ObstoreBackend("memory://"), LinkProfile(rtt=0.01))
    >>> started = time.perf_counter(); slow.put("k", b"v"); slow.head("k")
    1
    >>> time.perf_counter() - started >= 0.02
    True
    """

    def __init__(self, inner: ObjectBackend, link: LinkProfile) -> None:
        self.inner = inner
        self.link = link
        self.url = inner.url
        self.shareable = False  # the link lives in this process
        self._random = random.Random(link.seed)
        self._lock = threading.Lock()

    def _travel(self, verb: str, key: str, payload: int) -> bool:
        """Wait for the link; decide whether this request fails, and whether it fails after
        the far side acted (True) or before (raises now)."""
        link = self.link
        with self._lock:
            roll, after = self._random.random(), self._random.random() < 0.5
        wait = link.rtt + (payload / link.bandwidth if link.bandwidth else 0.0)
        if roll < link.timeout_rate:
            time.sleep(wait + link.timeout)
            raise TransientStoreError(f"{self.url}: {verb} {key} timed out (simulated)")
        if wait:
            time.sleep(wait)
        if roll < link.timeout_rate + link.error_rate:
            if not after:
                raise TransientStoreError(f"{self.url}: {verb} {key} failed (simulated)")
            return True
        return False

    def head(self, key: str) -> int | None:
        self._travel("HEAD", key, 0)
        return self.inner.head(key)

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        if self._travel("GET", key, len(data)):
            raise TransientStoreError(f"{self.url}: GET {key} lost its reply (simulated)")
        return data

    def put(self, key: str, data: bytes) -> None:
        fail_after = self._travel("PUT", key, len(data))
        self.inner.put(key, data)
        if fail_after:
            raise TransientStoreError(f"{self.url}: PUT {key} lost its reply (simulated)")

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        self._travel("LIST", prefix, 0)
        return iter(list(self.inner.list(prefix)))
