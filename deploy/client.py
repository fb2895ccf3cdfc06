"""The device side of a real split deployment: head + codec here, the caption from an edge service.

``EdgeClient`` speaks the protocol of :mod:`intelliflow.deploy.service` (``POST /caption`` with one
``.iflow`` file, or in stream mode the handshake ``POST /stream`` once per connection and then each
image's bare stream payload; keep-alive, one connection per thread). ``SplitDevice`` runs the
model's head and the codec on images, sends each payload and times every stage::

    device = SplitDevice("shapes-captioner", "shapes-hyperprior", EdgeClient("http://edge:8080"))
    device.caption([image])[0]  # {"caption": ..., "bits": ..., "device_ms": ..., "encode_ms": ...,
                                #  "roundtrip_ms": ..., "total_ms": ..., "wire_bytes": ...}
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import torch

from intelliflow.errors import ConfigError, ServiceError
from intelliflow.flow import Device
from intelliflow.flow.endpoints import split_for

from .auth import Credentials
from .container import pack_iflow, pack_stream_file
from .files import byte_codec


class EdgeClient:
    """HTTP client of an edge service at ``url`` (``http://host:port``); thread-safe.
    ``credentials``: the service's shared secret (:class:`~intelliflow.deploy.auth.Credentials`), for
    a service that serves configured devices only."""

    def __init__(self, url: str, timeout: float = 120.0, credentials: Credentials | None = None):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ConfigError(f"edge URL {url!r}: bad port ({exc}); expected http://HOST:PORT") from exc
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"edge URL {url!r}: expected http://HOST:PORT")
        self.url, self.host, self.port, self.timeout = url, parts.hostname, port, timeout
        self.credentials = credentials
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return conn

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, parsed JSON body); one reconnect when a kept-alive connection was closed."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                raw = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self._local.conn = None
                break
            except ConnectionRefusedError as exc:
                conn.close()
                self._local.conn = None
                raise ServiceError(f"cannot reach the edge service at {self.url}: {exc}") from exc
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine) as exc:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise ServiceError(f"edge service {self.url} dropped the connection: {exc}") from exc
            except OSError as exc:
                conn.close()
                self._local.conn = None
                raise ServiceError(f"cannot reach the edge service at {self.url}: {exc}") from exc
            except http.client.HTTPException as exc:  # a broken answer (cut short, garbled)
                conn.close()
                self._local.conn = None
                raise ServiceError(f"edge service {self.url} sent a broken answer: {exc!r}") from exc
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise ServiceError(f"edge service {self.url} answered {response.status} with non-JSON: {raw[:200]!r}") from exc
        return response.status, data

    def health(self) -> dict:
        """The service's ``/health`` answer (``status`` is ``ready`` when it serves)."""
        status, data = self._request("GET", "/health")
        return {**data, "http_status": status}

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Poll ``/health`` until 200 (or raise :class:`ServiceError` after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.health()
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                info = {}
            if info.get("http_status") == 200:
                return info
            if info.get("status") == "failed":
                raise ServiceError(f"the edge service at {self.url} failed to load its model or codec")
            if time.monotonic() > deadline:
                raise ServiceError(f"the edge service at {self.url} was not ready within {timeout:g} s")
            time.sleep(0.1)

    def _post(self, path: str, body: bytes, content_type: str = "application/octet-stream"):
        """(status, parsed JSON) of a POST, signed or carrying the token where the service asks for one."""
        headers = {"Content-Type": content_type}
        if self.credentials is not None:
            headers.update(self.credentials.headers(bytes(body)))
        return self._request("POST", path, body=bytes(body), headers=headers)

    def caption(self, iflow: bytes) -> dict:
        """Send one ``.iflow`` file; ``{"caption", "bits", "batch", "edge_ms", "roundtrip_ms"}``.
        A refusal raises :class:`ServiceError` with the service's status and message."""
        start = time.perf_counter()
        status, data = self._post("/caption", iflow)
        if status != 200:
            raise ServiceError(f"edge service answered {status}: {data.get('error', data)}")
        return {**data, "roundtrip_ms": 1e3 * (time.perf_counter() - start)}

    def caption_stream(self, payload: bytes, handshake: bytes) -> dict:
        """Stream mode: send one bare stream payload, agreeing the stream first on this thread's
        connection (``handshake``: a stream file with no image, see
        :meth:`SplitDevice.handshake`) where it has not been agreed, or was lost with a reconnect."""
        from .service import STREAM_PAYLOAD

        start = time.perf_counter()
        for attempt in (0, 1):
            conn = self._connection()
            if getattr(conn, "intelliflow_stream", None) != handshake:
                status, data = self._post("/stream", handshake)
                if status != 200:
                    raise ServiceError(f"edge service answered {status} to the stream handshake: {data.get('error', data)}")
                self._connection().intelliflow_stream = handshake
            status, data = self._post("/caption", payload, STREAM_PAYLOAD)
            if status == 409 and not attempt:   # the connection was renewed: agree again
                self._connection().intelliflow_stream = None
                continue
            if status != 200:
                raise ServiceError(f"edge service answered {status}: {data.get('error', data)}")
            return {**data, "roundtrip_ms": 1e3 * (time.perf_counter() - start)}
        raise ServiceError("edge service lost the stream twice")


class SplitDevice:
    """Head + codec on this machine; the tail on an edge service. One image at a time, timed.

    :param model: split model name or folder (the edge must serve the same model and split)
    :param codec: codec name (the edge must serve the same codec)
    :param client: an :class:`EdgeClient`, or the edge's URL
    :param compress_options: the codec's rate knob, e.g. ``{"q": rate point}`` for a learned codec
    :param stream: stream mode (the context agreed once per connection, each request the codec's
        bare payload); ``None`` (default): on where the codec has a stream mode, else ``.iflow`` files
    :param drafter: a drafter name or folder: each payload carries the device's draft, the edge
        verifies it (it must serve the same drafter); answers add the draft, its confidence and the
        time drafting took
    """

    def __init__(self, model: str, codec: str, client: EdgeClient | str, split: int | None = None,
                 compress_options: dict | None = None, stream: bool | None = None, drafter: str | None = None):
        from intelliflow.models import load_split_model
        from intelliflow.models.drafter import load_drafter

        self.model_name, self.codec_name = str(model), str(codec)
        self.drafter_name = None if drafter is None else str(drafter)
        self.codec = byte_codec(codec, "an edge service")
        drafter_object = None if drafter is None else load_drafter(drafter)
        split = split_for(self.codec, str(model), split)
        if split is None and drafter_object is not None:
            split = drafter_object.config.split
        self.model = load_split_model(model, split=split).eval()
        self.device = Device(self.model, self.codec, drafter_object)
        self.client = client if isinstance(client, EdgeClient) else EdgeClient(client)
        self.compress_options = dict(compress_options or {})
        if stream and not self.codec.streams:
            raise ConfigError(f"{codec} has no stream mode (its payloads are self-contained): use stream=False")
        self.stream = None
        if stream or (stream is None and self.codec.streams):
            self.stream = self.codec.stream_for(self.model.feature_grid, **self.codec.rate_options(**self.compress_options))

    @property
    def handshake(self) -> bytes | None:
        """The stream handshake (a stream file with no image), ``None`` outside stream mode."""
        if self.stream is None:
            return None
        from intelliflow.codec.bitstream import stream_header

        return pack_stream_file(self.model_name, self.model.split, self.codec_name,
                                stream_header(self.stream, self.codec.fingerprint), [], self.drafter_name)

    @torch.no_grad()
    def encode(self, image) -> tuple[bytes, float, float]:
        """One PIL image -> (what goes on the wire: an ``.iflow`` file, or the bare stream payload in
        stream mode; device ms; encode ms, drafting included)."""
        data, timing, _ = self.encode_drafted(image)
        return data, timing["device_ms"], timing["encode_ms"]

    @torch.no_grad()
    def encode_drafted(self, image) -> tuple[bytes, dict, dict | None]:
        """One PIL image -> (what goes on the wire; ``{"device_ms", "draft_ms", "encode_ms"}``; with a
        drafter ``{"text", "confidence", "bits"}`` of the draft, else ``None``). ``encode_ms``
        includes ``draft_ms``: on a real device the drafter runs while the payload is on the air only
        when it is not in the payload; here the draft rides in it."""
        t0 = time.perf_counter()
        x, prefix = self.device.codec_input([image])  # the head (nothing for an upload, the whole model for text)
        t1 = time.perf_counter()
        draft = self.device.draft(x, prefix)
        t2 = time.perf_counter()
        sent = self.device.encode_input(x, prefix, stream=self.stream, draft=draft, **self.compress_options)
        t3 = time.perf_counter()
        (payload,) = sent.data
        timing = {"device_ms": 1e3 * (t1 - t0), "draft_ms": 1e3 * (t2 - t1), "encode_ms": 1e3 * (t3 - t1)}
        mine = None if draft is None else {"text": self.model.decode_ids(torch.tensor([draft.tokens[0]]))[0],
                                           "confidence": draft.confidence[0], "bits": sent.draft_bits[0]}
        if self.stream is None:
            payload = pack_iflow(self.model_name, self.model.split, self.codec_name, payload, self.drafter_name)
        return payload, timing, mine

    def caption_one(self, image, client: EdgeClient | None = None) -> dict:
        """One PIL image -> ``{"caption", "bits", "wire_bytes", "device_ms", "encode_ms",
        "roundtrip_ms", "edge_ms", "batch", "total_ms"}`` (times in ms, measured here), sent to
        ``client`` (default: this device's); with a drafter also ``"draft"``: the service's
        ``{"drafted", "accepted", "passes", "greedy_passes"}`` plus this device's ``"text"``,
        ``"confidence"`` and ``"bits"``, and ``"draft_ms"``."""
        start = time.perf_counter()
        data, timing, mine = self.encode_drafted(image)
        client = client or self.client
        answer = client.caption(data) if self.stream is None else client.caption_stream(data, self.handshake)
        out = {**answer, "wire_bytes": len(data), "device_ms": timing["device_ms"], "encode_ms": timing["encode_ms"],
               "total_ms": 1e3 * (time.perf_counter() - start)}
        if mine is not None:
            out["draft"] = {**answer.get("draft", {}), **mine}
            out["draft_ms"] = timing["draft_ms"]
        return out

    def caption(self, images) -> list[dict]:
        """PIL images -> one :meth:`caption_one` answer per image."""
        return [self.caption_one(image) for image in images]
