"""Downloads that survive a flaky network: one policy for every file storelab fetches over HTTP.

- **Transient errors are retried** with a growing pause (:class:`RetryPolicy`): a name that does
  not resolve *this time* (``Temporary failure in name resolution``), a refused or reset
  connection, a timeout, a body cut short, HTTP 408/425/429 and 5xx. Anything else — a 404, a
  file that is not the pinned one — is final at once: retrying would not change the answer.
- **A download resumes**: bytes arrive in ``<target>.part``; the next attempt (or the next run)
  asks only for the rest with an HTTP ``Range`` request, and starts again from nothing when the
  server ignores the range.
- **Verified files are kept**: a file checked against a pinned size and sha256 is linked into a
  cache folder (``$XDG_CACHE_HOME/storelab/downloads/<sha256>``), so a second fetch of the same
  pinned file — another slice folder, the next test run — needs no network at all.

>>> RetryPolicy(attempts=3, first_pause=1.0, max_pause=1.5).pauses()
[1.0, 1.5]
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from storelab.errors import InputError

__all__ = ["RetryPolicy", "DEFAULT_POLICY", "is_transient", "download", "read_url", "fetch_verified", "verified_cache_dir", "sha256_of"]

TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses that say "not now" rather than "no"."""
_BLOCK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a download is tried: ``attempts`` in all, the pause between
    two doubling from ``first_pause`` up to ``max_pause`` seconds (the default waits about two
    minutes in all before giving up)."""

    attempts: int = 8
    first_pause: float = 1.0
    max_pause: float = 30.0
    timeout: float = 60.0
    """Seconds a connection may stay silent before the attempt counts as failed."""

    def pauses(self) -> list[float]:
        """The pause before each retry."""
        return [min(self.first_pause * 2**i, self.max_pause) for i in range(self.attempts - 1)]


DEFAULT_POLICY = RetryPolicy()


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` may well not happen again on the next try.

    >>> is_transient(urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")))
    True
    >>> is_transient(urllib.error.HTTPError("http://h/x", 404, "Not Found", None, None))  # type: ignore[arg-type]
    False
    """
    if isinstance(err, urllib.error.HTTPError):
        return err.code in TRANSIENT_HTTP
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        return isinstance(reason, BaseException) and is_transient(reason)
    if isinstance(err, socket.gaierror):
        # EAI_AGAIN (a resolver that did not answer in time) and the resolver failing outright;
        # "Name or service not known" (EAI_NONAME) is a wrong host name: final.
        return err.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11), getattr(socket, "EAI_FAIL", -4))
    return isinstance(err, (TimeoutError, ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected))


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _attempt(url: str, part: Path, timeout: float) -> None:
    """One try: fetch what ``part`` lacks of ``url`` (all of it when the server ignores ranges)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: the part holds the whole file already
            return
        raise
    with response:
        resumed = have and response.status == 206
        with open(part, "ab" if resumed else "wb") as out:
            expected = response.headers.get("Content-Length")
            copied = 0
            while block := response.read(_BLOCK):
                out.write(block)
                copied += len(block)
            if expected is not None and copied < int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - copied)


def _retrying(url: str, attempt: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None]) -> T:
    """``attempt()``, tried again after each transient error as ``policy`` says; the last error,
    or any other, becomes one :class:`~storelab.errors.InputError` naming ``url``."""
    pauses = policy.pauses()
    for tried in range(1, policy.attempts + 1):
        try:
            return attempt()
        except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError, socket errors, timeouts are OSErrors
            transient = isinstance(err, http.client.HTTPException) or is_transient(err)
            if not transient or tried == policy.attempts:
                what = _describe(err) if isinstance(err, urllib.error.HTTPError) else f"cannot fetch: {_describe(err)}"
                raise InputError(f"{url}: {what}" + (f" (after {tried} tries)" if tried > 1 else "")) from None
            sleep(pauses[tried - 1])
    raise AssertionError("unreachable: the last attempt returns or raises")


def download(
    url: str, target: Path, *, policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep
) -> Path:
    """Fetch ``url`` into ``target`` (through ``target.part``, resumed across tries and runs).

    Transient errors are retried as ``policy`` says; the last one, or any other, raises
    :class:`~storelab.errors.InputError` naming the URL. ``target`` appears only once the whole
    file is there.
    """
    part = target.with_name(target.name + ".part")

    def attempt() -> Path:
        _attempt(url, part, policy.timeout)
        part.replace(target)
        return target

    return _retrying(url, attempt, policy, sleep)


def read_url(url: str, *, policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """The body of ``url`` (a small document: an index, a JSON answer), retried like :func:`download`."""

    def attempt() -> bytes:
        with urllib.request.urlopen(url, timeout=policy.timeout) as response:
            return bytes(response.read())

    return _retrying(url, attempt, policy, sleep)


def verified_cache_dir() -> Path:
    """Where verified downloads are kept: ``$XDG_CACHE_HOME/storelab/downloads`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "storelab" / "downloads"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, size: int, sha256: str) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_of(path) == sha256


def _place(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s bytes: a hard link where the file system allows, else a copy."""
    staging = target.with_name(target.name + ".link")
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError:
        shutil.copyfile(source, staging)
    staging.replace(target)


def fetch_verified(
    urls: Sequence[str], target: Path, size: int, sha256: str, *, policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep, cache: Path | None = None,
) -> Path:  # fmt: skip
    """``target`` holding the pinned file (``size`` bytes, ``sha256``): already there, taken from
    the verified cache, or downloaded from the first of ``urls`` that serves it (each mirror
    tried as :func:`download` says, the next one after it gives up).

    A download that is not the pinned file is deleted and refused (``InputError``): no mirror
    is trusted over the pin. ``cache`` defaults to :func:`verified_cache_dir`; a cache that
    cannot be written is simply not used.
    """
    if _matches(target, size, sha256):
        return target
    cache = cache if cache is not None else verified_cache_dir()
    kept = cache / sha256
    if _matches(kept, size, sha256):
        _place(kept, target)
        return target
    errors = []
    for url in urls:
        try:
            download(url, target, policy=policy, sleep=sleep)
        except InputError as err:
            errors.append(str(err))
            continue
        if not _matches(target, size, sha256):
            target.unlink()
            raise InputError(f"{url} is not the pinned file (size or sha256 differs from the pin {sha256[:16]}…)")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _place(target, kept)
        except OSError:
            pass  # the cache only saves a later download
        return target
    raise InputError(errors[-1] if len(errors) == 1 else "; ".join(errors)) if errors else InputError(f"{target.name}: no URL to fetch it from")
