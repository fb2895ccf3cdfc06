"""Who may use an edge service: a shared secret, sent as a bearer token or as an HMAC per request.

The payload checks (CRC-16, the file's CRC-32, shapes against the model) catch damage, not
forgery: anyone with the package can compute them. An operator who wants only configured devices
served gives the service and its devices the same secret, in one of two forms:

- ``token``: the secret itself travels in ``Authorization: Bearer <secret>``. Simple; whoever sees
  one request (no TLS) can replay the token with any payload.
- ``hmac``: the secret never travels. Each request carries ``X-Intelliflow-Time`` (Unix seconds)
  and ``X-Intelliflow-Signature``, the hex HMAC-SHA256 of the time and the body under the secret.
  The service refuses a signature that does not match (a changed or forged body), a time more than
  :data:`MAX_SKEW_S` seconds from its clock, and a signature it has already accepted (a replay).

Both are off by default (the service listens on loopback). ``intelliflow serve`` and
``intelliflow caption --edge`` read the secret from ``INTELLIFLOW_TOKEN`` or
``INTELLIFLOW_HMAC_KEY`` (:func:`credentials_from_env`).

>>> device = service = Credentials("hmac", "s3cret")
>>> headers = device.headers(b"payload", now=1000.0)
>>> service.refusal(headers, b"payload", now=1001.0) is None
True
>>> service.refusal(headers, b"payload", now=1001.0)
'this signature was used already (a replayed request)'
>>> service.refusal(device.headers(b"payload", now=1000.0), b"forged", now=1001.0)
'the signature does not match the body'
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from typing import Mapping

from intelliflow.errors import ConfigError

#: how far a request's time may be from the service's clock (seconds)
MAX_SKEW_S = 60.0
KINDS = ("token", "hmac")
ENVIRONMENT = {"token": "INTELLIFLOW_TOKEN", "hmac": "INTELLIFLOW_HMAC_KEY"}


class Credentials:
    """A shared secret and how it is shown: ``kind`` is ``"token"`` or ``"hmac"`` (see the module).

    The same object signs on a device (:meth:`headers`) and checks on the service (:meth:`refusal`);
    the service's copy remembers the HMAC signatures it accepted within :data:`MAX_SKEW_S`.
    """

    def __init__(self, kind: str, secret: str | bytes):
        if kind not in KINDS:
            raise ConfigError(f"unknown credentials kind {kind!r}; expected one of {', '.join(KINDS)}")
        secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not secret:
            raise ConfigError(f"the {kind} secret is empty")
        self.kind, self._secret = kind, secret
        self._seen: OrderedDict[str, float] = OrderedDict()   # signature -> its request time
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Credentials({self.kind!r}, <secret>)"

    def _signature(self, stamp: str, body: bytes) -> str:
        return hmac.new(self._secret, stamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()

    def headers(self, body: bytes, now: float | None = None) -> dict[str, str]:
        """The request headers that prove this device knows the secret (for a ``body`` to POST)."""
        if self.kind == "token":
            return {"Authorization": f"Bearer {self._secret.decode('utf-8', 'replace')}"}
        stamp = f"{time.time() if now is None else now:.3f}"
        return {"X-Intelliflow-Time": stamp, "X-Intelliflow-Signature": self._signature(stamp, bytes(body))}

    def refusal_before_body(self, headers: Mapping[str, str], now: float | None = None) -> str | None:
        """Why a request is refused from its headers alone (``None``: read its body). A bearer token
        is checked here; for an HMAC, that the headers are there and the time is within the window."""
        if self.kind == "token":
            expected = f"Bearer {self._secret.decode('utf-8', 'replace')}".encode()
            if not hmac.compare_digest((headers.get("Authorization") or "").encode(), expected):
                return "this service serves configured devices only: send Authorization: Bearer <token>"
            return None
        stamp, signature = headers.get("X-Intelliflow-Time"), headers.get("X-Intelliflow-Signature")
        if not stamp or not signature:
            return ("this service serves configured devices only: sign each request (X-Intelliflow-Time and "
                    "X-Intelliflow-Signature, an HMAC-SHA256 of the time and the body)")
        try:
            when = float(stamp)
        except ValueError:
            return f"X-Intelliflow-Time {stamp[:30]!r} is not a number of seconds"
        now = time.time() if now is None else now
        if not abs(now - when) <= MAX_SKEW_S:
            return f"the request's time is {now - when:+.0f} s off this service's clock (at most {MAX_SKEW_S:.0f})"
        return None

    def refusal(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str | None:
        """Why a request is refused (``None``: it comes from a configured device): the header checks,
        then the body's."""
        return self.refusal_before_body(headers, now) or self.refusal_of_body(headers, body, now)

    def refusal_of_body(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str | None:
        """Why a request whose headers passed :meth:`refusal_before_body` is refused once its body has
        arrived: for an HMAC, a signature that does not match the body, or one used already."""
        if self.kind == "token":
            return None
        stamp, signature = headers["X-Intelliflow-Time"], headers["X-Intelliflow-Signature"]
        if not hmac.compare_digest(signature.encode(), self._signature(stamp, bytes(body)).encode()):
            return "the signature does not match the body"
        now = time.time() if now is None else now
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_SKEW_S:
                self._seen.popitem(last=False)
            if signature in self._seen:
                return "this signature was used already (a replayed request)"
            self._seen[signature] = float(stamp)
        return None


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials named by ``INTELLIFLOW_TOKEN`` or ``INTELLIFLOW_HMAC_KEY`` (not both), or
    ``None`` when neither is set."""
    environ = os.environ if environ is None else environ
    given = {kind: environ.get(name) for kind, name in ENVIRONMENT.items() if environ.get(name)}
    if len(given) > 1:
        raise ConfigError("set INTELLIFLOW_TOKEN or INTELLIFLOW_HMAC_KEY, not both")
    return next((Credentials(kind, secret) for kind, secret in given.items()), None)
