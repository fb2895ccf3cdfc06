"""The edge (or cloud) side of a real split deployment: an HTTP service that finishes captions.

Wire protocol (one image per request, HTTP/1.1, keep-alive):

- ``POST /caption`` with ``Content-Type: application/octet-stream``; the body is exactly one
  ``.iflow`` file (:mod:`intelliflow.deploy.container`: a header of a few bytes naming model,
  split point and codec, then the codec's own bitstream). The answer is JSON
  ``{"caption": str, "bits": int, "batch": int, "edge_ms": float}``: ``bits`` is the payload
  the codec produced (header excluded), ``batch`` how many requests shared the tail's forward
  pass, ``edge_ms`` the time from arrival to answer.
- **Stream mode**, per connection: ``POST /stream`` with a stream file that holds no image
  (:func:`~intelliflow.deploy.container.pack_stream_file` with no payloads: model, split, codec
  and the codec's stream header, which fixes the grid and rate point and is checked against the
  service's codec weights) agrees the context once; the answer is JSON ``{"stream": {...}}``. Each
  ``POST /caption`` on the same connection with ``Content-Type: application/x-intelliflow-stream``
  then carries only the image's stream payload (the codec's body: no container, no header, no
  check; TCP checks the bytes), answered as above. A stream payload on a connection that agreed no
  stream is 409.
- **Drafts** (speculative captioning, a service started with a drafter): an ``.iflow`` file that
  names the drafter (or a stream agreed with it) carries the device's draft of the caption in
  front of each payload; the service verifies it in one pass of the tail and answers the same
  caption plus ``"draft": {"drafted", "accepted", "passes", "greedy_passes"}`` (draft tokens
  received and kept, decoder passes for the caption and plain greedy decoding's). Requests
  without a draft are served as before, in the same batches.
- ``GET /health`` answers 200 ``{"status": "ready", ...}`` once the model and codec are loaded,
  503 ``{"status": "loading"}`` before.
- Every refusal is JSON ``{"error": message}``, and the service keeps serving. The sender's
  faults are 4xx: 400 malformed or truncated payload (or request line), 404 unknown path,
  411 no ``Content-Length``, 413 body over ``max_body_bytes``, 415 wrong content type, 422 a
  payload for another model, split point or codec. The service's own state is 5xx: 501 an
  unsupported method, 503 not ready yet or overloaded, 504 no answer in time, 500 a failure of
  the model itself.

Each request's payload is checked and decoded in its own connection thread; requests that arrive
while a batch runs (or within ``batch_wait_ms`` of the first) are then captioned in one batch by
a single worker thread, so the tail runs once per batch. A request fails alone, always: a
payload's declared shape is checked against the configured model before it is decoded (a forged
header claiming another latent size costs a header read, not an entropy decode, and never reaches
the worker), decoded features are checked again before they join a batch, and should a batch
still fail, each request is finished alone.

Why the standard library (``http.server``): the service needs one POST route, one GET route and a
batching queue; a web framework would add a dependency and an event loop for no gain here.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from intelliflow.codec.registry import canonical_name
from intelliflow.errors import BitstreamError, IntelliflowError, PayloadMismatchError
from intelliflow.flow import Receiver
from intelliflow.flow.endpoints import split_for

from .auth import Credentials
from .container import identifier, unpack_iflow, unpack_stream_file
from .files import byte_codec

DEFAULT_MAX_BODY_BYTES = 1 << 20
#: the Content-Type of a bare stream payload (after ``POST /stream`` on the same connection)
STREAM_PAYLOAD = "application/x-intelliflow-stream"
_DRAIN_BYTES = 16 << 20  # an oversized body is read and dropped up to this much before the 413


@dataclass
class _Job:
    decoded: object  # the model's input, decoded and checked in the request's own thread
    bits: int
    arrived: float
    drafted: bool = False   # the payload carried a draft
    future: Future = field(default_factory=Future)


class EdgeService:
    """Finishes captions for one model (at one split point) and one codec, batching requests.

    :param model: a split model name or folder (as ``intelliflow.models.load_split_model`` takes)
    :param codec: a codec name (baseline, shipped codec, or checkpoint folder)
    :param max_batch: the most requests captioned in one forward pass
    :param batch_wait_ms: how long the worker waits for more requests after the first arrives (0:
        batch only what queued up while the previous batch ran, adding no delay)
    :param drafter: a drafter name or folder: requests may then carry its drafts (see the module docstring)

    ``submit(iflow_bytes)`` returns a ``Future`` of ``{"caption", "bits", "batch", "edge_ms"}``;
    malformed or foreign payloads raise at once (:class:`BitstreamError`,
    :class:`PayloadMismatchError`).
    """

    def __init__(self, model: str, codec: str, split: int | None = None, max_batch: int = 16,
                 batch_wait_ms: float = 0.0, max_queue: int = 1024, threads: int | None = None,
                 drafter: str | None = None):
        self.model_name, self.codec_name, self.requested_split = str(model), str(codec), split
        self.drafter_name = None if drafter is None else str(drafter)
        self.drafted_receiver = None
        self.max_batch, self.batch_wait_s, self.threads = max(1, int(max_batch)), batch_wait_ms / 1e3, threads
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._worker: threading.Thread | None = None
        self.model = self.codec = self.receiver = None
        self.served = self.refused = self.failed = 0
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    def load(self) -> "EdgeService":
        """Load model and codec (blocking), then start the batching worker."""
        from intelliflow.models import load_split_model

        try:
            if self.threads:
                torch.set_num_threads(int(self.threads))
            self.codec = byte_codec(self.codec_name, "an HTTP service")
            drafter = None
            if self.drafter_name is not None:
                from intelliflow.models.drafter import load_drafter

                drafter = load_drafter(self.drafter_name)
            split = split_for(self.codec, self.model_name, self.requested_split)
            if split is None and drafter is not None:
                split = drafter.config.split
            self.model = load_split_model(self.model_name, split=split).eval()
            self.receiver = Receiver(self.model, self.codec)
            if drafter is not None:
                self.drafted_receiver = Receiver(self.model, self.codec, drafter)
        except BaseException as exc:
            self._load_error = exc
            raise
        self._worker = threading.Thread(target=self._work, name="intelliflow-edge-batcher", daemon=True)
        self._worker.start()
        self._ready.set()
        return self

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=10)
            self._worker = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def describe(self) -> dict:
        """What the service serves (the ``/health`` body)."""
        return {"status": "ready" if self.ready else ("failed" if self._load_error else "loading"),
                "model": self.model_name, "split": None if self.model is None else self.model.split,
                "codec": self.codec_name, "drafter": self.drafter_name, "max_batch": self.max_batch, "served": self.served,
                "refused": self.refused, "failed": self.failed}

    # ------------------------------------------------------------------ requests
    def count_refusal(self) -> None:
        with self._count_lock:
            self.refused += 1

    def count_failure(self) -> None:
        with self._count_lock:
            self.failed += 1

    def _check_names(self, parsed) -> None:
        wanted = (identifier(self.model_name), self.model.split, canonical_name(self.codec_name))
        got = (parsed.model, parsed.split, canonical_name(parsed.codec))
        if got != wanted:
            raise PayloadMismatchError(
                f"this service finishes model {wanted[0]!r} at split {wanted[1]} with codec {self.codec_name!r}; "
                f"the payload is for model {parsed.model!r} at split {parsed.split} with codec {parsed.codec!r}")
        if parsed.drafter is not None and (self.drafter_name is None or parsed.drafter != identifier(self.drafter_name)):
            raise PayloadMismatchError(f"the payload carries drafts of {parsed.drafter!r}; this service verifies "
                                       + (f"drafts of {identifier(self.drafter_name)!r}" if self.drafter_name
                                          else "no drafts (start it with --draft)"))

    def agree_stream(self, data: bytes):
        """The stream handshake: a stream file with no image -> (the
        :class:`~intelliflow.codec.bitstream.StreamContext` this connection's payloads are coded in,
        whether they carry drafts). Another model, split or codec (or the same codec's name with
        other weights, or another drafter) is a :class:`PayloadMismatchError`."""
        from intelliflow.codec.bitstream import read_stream_header

        parsed = unpack_stream_file(data)
        self._check_names(parsed)
        if not self.codec.streams:
            raise PayloadMismatchError(f"codec {self.codec_name!r} has no stream mode: send .iflow files")
        if parsed.payloads:
            raise BitstreamError("the stream handshake carries no image: send each payload to POST /caption")
        try:
            stream = read_stream_header(parsed.header, self.codec.payload_id, self.codec.fingerprint)
        except BitstreamError as exc:
            raise PayloadMismatchError(f"the stream was not agreed for this service's {self.codec_name!r}: {exc}") from exc
        if (stream.height, stream.width) != tuple(self.model.feature_grid):
            raise PayloadMismatchError(f"the stream's grid {stream.height}x{stream.width} is not the model's "
                                       f"{'x'.join(map(str, self.model.feature_grid))}")
        return stream, parsed.drafter is not None

    def submit(self, data: bytes, stream=None, drafted: bool = False) -> Future:
        """Check one ``.iflow`` file (or, under ``stream``, one stream payload, with a draft in front
        where the stream was agreed with one: see :meth:`agree_stream`) against what this service
        serves, decode it (in the caller's thread: a bad payload never reaches the batch worker)
        and queue it for the tail."""
        arrived = time.perf_counter()
        if stream is None:
            parsed = unpack_iflow(data)
            self._check_names(parsed)
            payload, bits, drafted = parsed.payload, parsed.bits, parsed.drafter is not None
        else:
            payload, bits = bytes(data), 8 * len(data)
        try:
            decoded = (self.drafted_receiver if drafted else self.receiver).decode([payload], stream=stream)
        except IntelliflowError:
            raise
        except Exception as exc:  # a codec library choking on garbage is still the payload's fault
            raise BitstreamError(f"the payload does not decode: {exc}") from exc
        job = _Job(decoded, bits, arrived, drafted=drafted)
        self._queue.put_nowait(job)  # queue.Full when overloaded: the server answers 503
        return job.future

    def _take_batch(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch, deadline = [first], time.perf_counter() + self.batch_wait_s
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            batch.append(job)
        return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                self._caption_batch(batch)
            except BaseException as exc:  # keep serving: the batch's requests get the error
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _finish(self, jobs: list[_Job]) -> tuple[list[str], object]:
        """Captions of a batch; where any request carried a draft, every request is verified (one
        without a draft against an empty one: plain greedy decoding, the same caption)."""
        if not any(job.drafted for job in jobs):
            return self.receiver.finish(self.receiver.join([job.decoded for job in jobs])), None
        from intelliflow.flow.endpoints import Drafted

        parts = [job.decoded if job.drafted else Drafted(job.decoded, [[] for _ in range(len(job.decoded))])
                 for job in jobs]
        receiver = self.drafted_receiver
        return receiver.finish_verified(receiver.join(parts))

    @torch.no_grad()
    def _caption_batch(self, batch: list[_Job]) -> None:
        try:
            captions, verified = self._finish(batch)
        except Exception:  # noqa: BLE001 - never let one request fail the others: finish each alone
            if len(batch) == 1:
                raise
            for job in batch:
                try:
                    self._answer_jobs([job], *self._finish([job]))
                except Exception as exc:  # noqa: BLE001 - this request's own failure
                    job.future.set_exception(exc)
            return
        self._answer_jobs(batch, captions, verified)

    def _answer_jobs(self, jobs: list[_Job], captions: list[str], verified=None) -> None:
        done = time.perf_counter()
        with self._count_lock:
            self.served += len(jobs)
        for i, (job, caption) in enumerate(zip(jobs, captions)):
            answer = {"caption": caption, "bits": job.bits, "batch": len(jobs), "edge_ms": 1e3 * (done - job.arrived)}
            if job.drafted:
                answer["draft"] = {"drafted": verified.drafted[i], "accepted": verified.accepted[i],
                                   "passes": verified.passes[i], "greedy_passes": verified.new_tokens[i]}
            job.future.set_result(answer)


# ---------------------------------------------------------------------- HTTP
_STATUS = {BitstreamError: HTTPStatus.BAD_REQUEST, PayloadMismatchError: HTTPStatus.UNPROCESSABLE_ENTITY}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "intelliflow-edge"
    timeout = 30  # seconds any one read may wait (a sender that stalls that long is dropped)
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    @property
    def service(self) -> EdgeService:
        return self.server.service  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def handle_one_request(self):
        """One request, within ``request_timeout_s`` in all (a sender trickling bytes is cut off, not
        just one that stalls); a client gone early ends its connection quietly."""
        timer = threading.Timer(self.server.request_timeout_s, self._cut)  # type: ignore[attr-defined]
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        finally:
            timer.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _answer(self, status: int, body: dict, close: bool = False) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(raw)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a garbled request line, an unknown method) as JSON too."""
        if self.command == "HEAD":  # no body may follow a HEAD answer
            return super().send_error(code, message, explain)
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":  # a garbled request line: answer in 1.1
            self.request_version = self.protocol_version
        try:
            self._refuse(code, message or HTTPStatus(code).phrase, close=True)
        except OSError:
            pass

    def _discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes of a refused body (stops early at EOF or timeout)."""
        try:
            while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
                length -= len(chunk)
        except OSError:
            pass

    def _refuse(self, status: int, message: str, close: bool = False) -> None:
        self.service.count_refusal()
        self._answer(status, {"error": message}, close=close)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?")[0] == "/health":
            info = self.service.describe()
            self._answer(HTTPStatus.OK if self.service.ready else HTTPStatus.SERVICE_UNAVAILABLE, info)
        else:
            self._refuse(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}: use POST /caption or GET /health")

    #: the stream this connection agreed (``POST /stream``), or ``None``; whether its payloads carry drafts
    stream = None
    stream_drafted = False

    def do_POST(self):  # noqa: N802
        path = self.path.split("?")[0]
        if path not in ("/caption", "/stream"):
            length = self.headers.get("Content-Length", "0")
            self._discard(min(int(length) if length.isdigit() else 0, _DRAIN_BYTES))
            return self._refuse(HTTPStatus.NOT_FOUND, f"no such path {self.path!r}: POST /caption takes an .iflow file "
                                "(or a stream payload), POST /stream agrees a stream", close=True)
        lengths = self.headers.get_all("Content-Length") or []
        if "Transfer-Encoding" in self.headers:  # with or beside a length: ambiguous framing, refused
            return self._refuse(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not accepted: send a Content-Length",
                                close=True)
        if not lengths:
            return self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the .iflow file with a Content-Length header",
                                close=True)
        if len(lengths) > 1 or not lengths[0].strip().isdigit() or not lengths[0].strip().isascii():
            return self._refuse(HTTPStatus.BAD_REQUEST, f"bad Content-Length {', '.join(lengths)[:40]!r}: one "
                                "decimal number", close=True)
        length = int(lengths[0])
        credentials = self.server.credentials  # type: ignore[attr-defined]
        if credentials is not None and (reason := credentials.refusal_before_body(self.headers)) is not None:
            self._discard(min(length, _DRAIN_BYTES))
            return self._refuse(HTTPStatus.UNAUTHORIZED, reason, close=True)
        limit = self.server.max_body_bytes  # type: ignore[attr-defined]
        if length > limit:
            self._discard(min(length, _DRAIN_BYTES))  # a client still sending would otherwise see a reset, not the 413
            return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                f"payload of {length} bytes is over this service's limit of {limit} bytes", close=True)
        kind = (self.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip().lower()
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            return self._refuse(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time", close=True)
        if len(body) < length:
            return self._refuse(HTTPStatus.BAD_REQUEST,
                                f"truncated body: Content-Length says {length} bytes, {len(body)} arrived", close=True)
        if credentials is not None and (reason := credentials.refusal_of_body(self.headers, body)) is not None:
            return self._refuse(HTTPStatus.UNAUTHORIZED, reason, close=True)
        streamed = kind == STREAM_PAYLOAD and path == "/caption"
        if kind != "application/octet-stream" and not streamed:
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                f"Content-Type {kind!r}: send the .iflow file as application/octet-stream "
                                f"(a stream payload as {STREAM_PAYLOAD})")
        if not self.service.ready:
            return self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the model is still loading; retry after GET /health is 200")
        if streamed and self.stream is None:
            return self._refuse(HTTPStatus.CONFLICT, "no stream was agreed on this connection: POST /stream first")
        if path == "/stream":
            try:
                self.stream, self.stream_drafted = self.service.agree_stream(body)
            except IntelliflowError as exc:
                status = next((s for t, s in _STATUS.items() if type(exc) is t), HTTPStatus.BAD_REQUEST)
                return self._refuse(status, str(exc))
            c = self.stream
            return self._answer(HTTPStatus.OK, {"stream": {"grid": [c.height, c.width], "check": c.check,
                                                           "q": None if c.q16 is None else c.q16 / 16,
                                                           "drafts": self.stream_drafted}})
        try:
            result = self.service.submit(body, self.stream if streamed else None,
                                         drafted=streamed and self.stream_drafted).result(
                timeout=self.server.answer_timeout_s)  # type: ignore[attr-defined]
        except queue.Full:
            return self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the service is overloaded; retry later")
        except FutureTimeout:
            return self._refuse(HTTPStatus.GATEWAY_TIMEOUT, "the caption was not ready in time; retry later")
        except IntelliflowError as exc:
            status = next((s for t, s in _STATUS.items() if type(exc) is t), HTTPStatus.BAD_REQUEST)
            return self._refuse(status, str(exc))
        except Exception as exc:  # noqa: BLE001 - an unexpected failure answers 500 and the service goes on
            self.service.count_failure()
            return self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        self._answer(HTTPStatus.OK, result)


class EdgeServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to an :class:`EdgeService` (one thread per connection).

    Bounded: at most ``max_connections`` connections at once (more are closed on arrival), each
    read waits at most 30 s, each request takes at most ``request_timeout_s`` in all, and an idle
    kept-alive connection is closed after 30 s. With ``credentials``
    (:class:`~intelliflow.deploy.auth.Credentials`), only requests that carry the shared secret's
    bearer token or a valid HMAC signature are served (401 otherwise); off by default.

    Why the standard library and not a server framework: the bounds above are a semaphore and two
    timeouts; one POST route and one GET route need nothing more.
    """

    daemon_threads = True
    request_queue_size = 256  # listen backlog: many clients may connect at once

    def __init__(self, address: tuple[str, int], service: EdgeService, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 answer_timeout_s: float = 120.0, verbose: bool = False, max_connections: int = 128,
                 request_timeout_s: float = 150.0, credentials: Credentials | None = None):
        super().__init__(address, _Handler)
        self.service, self.max_body_bytes = service, int(max_body_bytes)
        self.answer_timeout_s, self.verbose = answer_timeout_s, verbose
        self.request_timeout_s, self.credentials = request_timeout_s, credentials
        self._slots = threading.BoundedSemaphore(max(1, int(max_connections)))

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):  # full: close at once instead of queueing a thread
            self.service.count_refusal()
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_server(service: EdgeService, host: str = "127.0.0.1", port: int = 0, load_in_background: bool = True,
                 **options) -> tuple[EdgeServer, threading.Thread]:
    """Bind (``port=0`` picks a free port), serve in a thread, and load the service: in the
    background, or here (blocking) with ``load_in_background=False``; ``/health`` answers 503
    until it is ready. Stop with ``server.shutdown()``. A port that cannot be bound is a
    :class:`~intelliflow.errors.ConfigError`."""
    from intelliflow.errors import ConfigError

    try:
        server = EdgeServer((host, port), service, **options)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    thread = threading.Thread(target=server.serve_forever, name="intelliflow-edge-http", daemon=True)
    thread.start()
    if load_in_background:
        threading.Thread(target=_load_quietly, args=(service,), daemon=True).start()
    else:
        try:
            service.load()
        except BaseException:
            server.shutdown()
            server.server_close()
            raise
    return server, thread


def _load_quietly(service: EdgeService) -> None:
    try:
        service.load()
    except BaseException:  # noqa: BLE001 - reported through /health ("failed") and describe()
        pass
