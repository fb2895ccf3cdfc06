"""The edge service and the device client on loopback: captions match the local decoder, bad
requests get a 4xx and the service goes on serving, concurrent requests are batched."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from intelliflow.deploy.auth import Credentials
from intelliflow.deploy.container import pack_iflow, unpack_iflow
from intelliflow.data.shapes import make_sample
from intelliflow.errors import ServiceError
from intelliflow.deploy.client import EdgeClient, SplitDevice
from intelliflow.deploy.files import FileDecoder
from intelliflow.deploy.service import EdgeService, start_server
from intelliflow.recipes.cli import main

MODEL, CODEC = "shapes-captioner", "shapes-hyperprior"


@pytest.fixture(scope="module")
def edge():
    service = EdgeService(MODEL, CODEC, max_batch=8, batch_wait_ms=100)
    server, _ = start_server(service, max_body_bytes=4096)
    client = EdgeClient(server.url)
    client.wait_ready(timeout=120)
    yield server, client
    server.shutdown()
    server.server_close()
    service.close()


@pytest.fixture(scope="module")
def device(edge):
    return SplitDevice(MODEL, CODEC, edge[1], stream=False)   # one .iflow file per request


@pytest.fixture(scope="module")
def images():
    return [make_sample("test", i).image for i in range(12)]


def raw_request(server, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send bytes as they are (no client library fixing them up) and read the answer."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def test_the_edge_finishes_the_same_caption_as_the_local_decoder(device, images):
    decoder = FileDecoder()
    for image, answer in zip(images[:3], device.caption(images[:3])):
        data, _, _ = device.encode(image)
        assert (answer["caption"], answer["bits"]) == decoder.decode(data)
        assert answer["wire_bytes"] == len(data) and answer["bits"] == 8 * len(unpack_iflow(data).payload)
        assert answer["roundtrip_ms"] >= answer["edge_ms"] > 0


def test_stream_mode_agrees_once_per_connection_and_sends_bare_payloads(edge, device, images):
    server, client = edge
    streamer = SplitDevice(MODEL, CODEC, client)            # stream mode: the codec has one
    assert streamer.stream is not None and device.stream is None
    answers, files = streamer.caption(images[:4]), device.caption(images[:4])
    assert [a["caption"] for a in answers] == [f["caption"] for f in files]
    # the container and the codec's 4-byte header and CRC-16 stay off the wire
    assert [a["bits"] for a in answers] == [f["bits"] - 48 for f in files]
    assert all(a["wire_bytes"] == a["bits"] // 8 for a in answers)
    payload, _, _ = streamer.encode(images[0])
    head = (b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-intelliflow-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload))
    assert raw_request(server, head, payload)[0] == 409      # no stream agreed on this connection
    # a connection renewed behind the client's back: the 409 makes it agree again, once
    fresh = EdgeClient(server.url)
    fresh._connection().intelliflow_stream = streamer.handshake
    assert fresh.caption_stream(payload, streamer.handshake)["caption"] == answers[0]["caption"]
    # a handshake for another split point is refused at once, before any image
    from intelliflow.codec.bitstream import stream_header
    from intelliflow.deploy.container import pack_stream_file

    other = pack_stream_file(MODEL, 2, CODEC, stream_header(streamer.stream, streamer.codec.fingerprint), [])
    with pytest.raises(ServiceError, match="422"):
        EdgeClient(server.url).caption_stream(payload, other)


def test_bad_requests_get_4xx_with_a_message_and_the_service_goes_on(edge, device, images):
    server, client = edge
    good, _, _ = device.encode(images[0])
    payload = unpack_iflow(good).payload
    corrupted = good[:-3] + bytes([good[-3] ^ 0xFF]) + good[-2:]
    cases = {
        "garbage": (b"not an iflow file at all", 400),
        "empty": (b"", 400),
        "truncated payload": (good[:-4], 400),
        "flipped bits": (corrupted, 400),
        "truncated header": (good[:5], 400),
        "another codec": (pack_iflow(MODEL, 4, "mse-codec", payload), 422),
        "another split": (pack_iflow(MODEL, 2, CODEC, payload), 422),
        "another model": (pack_iflow("some-other-model", 4, CODEC, payload), 422),
    }
    for name, (body, status) in cases.items():
        with pytest.raises(ServiceError, match=f"answered {status}: .+"):
            client.caption(body)
    # oversized: refused from the header alone, without reading 1 MB
    status, answer = raw_request(server, b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
                                         b"\r\nContent-Length: 1000000\r\n\r\n", b"\x00" * 100)
    assert status == 413 and "limit of 4096 bytes" in answer["error"]
    # a real client sending the whole oversized body gets the 413 too, not a reset connection
    with pytest.raises(ServiceError, match="answered 413: .*limit of 4096 bytes"):
        client.caption(good + b"\x00" * 200_000)
    # a body shorter than its Content-Length
    status, answer = raw_request(server, b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n", good)
    assert status == 400 and "truncated body" in answer["error"]
    status, answer = raw_request(server, b"POST /caption HTTP/1.1\r\nHost: x\r\n\r\n", good)
    assert status == 411
    status, answer = raw_request(server, b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(good), good)
    assert status == 415
    status, _ = raw_request(server, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 404
    status, answer = raw_request(server, b"DELETE /caption HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and answer["error"]
    status, answer = raw_request(server, b"\x00\x01garbage\r\n\r\n")
    assert status == 400 and answer["error"]
    # still serving, and the good payload still gives its caption
    assert client.caption(good)["caption"] == FileDecoder().decode(good)[0]
    health = client.health()
    assert health["http_status"] == 200 and health["refused"] >= len(cases) + 7


def test_concurrent_clients_are_batched_and_each_gets_its_own_caption(edge, device, images):
    server, _ = edge
    files = [device.encode(image)[0] for image in images]
    expected = [FileDecoder().decode(data)[0] for data in files]
    answers, errors = [None] * len(files), []
    barrier = threading.Barrier(len(files))

    def send(i):
        client = EdgeClient(server.url)  # one connection per client
        barrier.wait()
        try:
            answers[i] = client.caption(files[i])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert [a["caption"] for a in answers] == expected
    assert max(a["batch"] for a in answers) > 1


def test_caption_command_talks_to_the_edge(edge, tmp_path, capsys):
    server, _ = edge
    paths = []
    for i in range(2):
        make_sample("test", i).image.save(tmp_path / f"img{i}.png")
        paths.append(str(tmp_path / f"img{i}.png"))
    assert main(["caption", *paths, "--edge", server.url, "--codec", CODEC, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    local = SplitDevice(MODEL, CODEC, server.url, stream=False)
    assert [r["caption"] for r in rows] == [FileDecoder().decode(local.encode(make_sample("test", i).image)[0])[0]
                                           for i in range(2)]
    assert all(r["bits"] > 0 and r["total_ms"] >= r["roundtrip_ms"] for r in rows)
    assert main(["caption", *paths, "--edge", server.url, "--codec", CODEC, "--framing", "file", "--json"]) == 0
    assert [r["bits"] for r in json.loads(capsys.readouterr().out)] == [r["bits"] + 48 for r in rows]
    # a device with another codec is refused by the edge, with its message
    assert main(["caption", paths[0], "--edge", server.url, "--codec", "mse-codec"]) == 2
    assert "answered 422" in capsys.readouterr().err


def test_an_edge_that_is_not_there_is_a_clear_error(capsys, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    make_sample("test", 0).image.save(tmp_path / "img.png")
    assert main(["caption", str(tmp_path / "img.png"), "--edge", f"http://127.0.0.1:{port}", "--wait", "0.5"]) == 2
    assert "cannot reach the edge service" in capsys.readouterr().err


def test_serve_command_starts_answers_and_stops_on_sigterm():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "intelliflow.recipes.cli", "serve", "--role", "edge", "--codec",
                             CODEC, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        client = EdgeClient(f"http://127.0.0.1:{port}")
        client.wait_ready(timeout=120)
        data, _, _ = SplitDevice(MODEL, CODEC, client, stream=False).encode(make_sample("test", 3).image)
        assert client.caption(data)["caption"] == FileDecoder().decode(data)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "served 1 captions" in out


def test_serve_on_a_busy_port_is_a_clear_error(edge, capsys):
    server, _ = edge
    assert main(["serve", "--codec", CODEC, "--port", str(server.server_address[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_a_service_that_failed_to_load_is_reported_at_once():
    service = EdgeService(MODEL, "no-such-codec")
    server, _ = start_server(service)
    try:
        start = time.monotonic()
        with pytest.raises(ServiceError, match="failed to load"):
            EdgeClient(server.url).wait_ready(timeout=60)
        assert time.monotonic() - start < 30
    finally:
        server.shutdown()
        server.server_close()


def forged(data: bytes, height: int, width: int) -> bytes:
    """An honest .iflow file whose payload header claims another grid size, its check recomputed
    (anyone with the package can compute the codec's fingerprint)."""
    from intelliflow.codec import resolve_codec
    from intelliflow.codec import bitstream

    parsed = unpack_iflow(data)
    codec = resolve_codec(CODEC)
    packet = bitstream.unpack(parsed.payload, codec.payload_id, codec.fingerprint)
    payload = bitstream.pack(codec.payload_id, packet.q16, height, width, packet.body, codec.fingerprint)
    return pack_iflow(parsed.model, parsed.split, parsed.codec, payload)


def test_a_forged_payload_fails_alone_and_cheaply_in_a_batch_of_honest_ones(edge, device, images):
    server, _ = edge
    honest = [device.encode(image)[0] for image in images[:8]]
    expected = [FileDecoder().decode(data)[0] for data in honest]
    lies = [forged(honest[0], 4, 5), forged(honest[1], 255, 255)]  # a mis-sized and a huge latent
    answers, refused = [None] * len(honest), []
    barrier = threading.Barrier(len(honest) + len(lies))

    def send(i, data):
        client = EdgeClient(server.url)
        barrier.wait()
        try:
            answer = client.caption(data)
            if i is not None:
                answers[i] = answer
        except ServiceError as exc:
            refused.append((i, str(exc)))

    threads = [threading.Thread(target=send, args=(i, d)) for i, d in enumerate(honest)]
    threads += [threading.Thread(target=send, args=(None, d)) for d in lies]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [a["caption"] for a in answers] == expected            # every honest request got its solo caption
    assert sorted(i is None for i, _ in refused) == [True, True]  # only the forged ones were refused...
    assert all("400" in message and "grid" in message for _, message in refused)  # ...with a 400 naming the lie
    assert time.perf_counter() - start < 60


def test_connections_and_framing_are_bounded_and_a_token_can_be_required(images):
    """Ambiguous framing is refused, connections are capped, a trickling sender is cut off, and with
    a token only configured devices are served; the service goes on answering throughout."""
    service = EdgeService(MODEL, "text")
    server, _ = start_server(service, max_connections=4, request_timeout_s=1.0, credentials=Credentials("token", "s3cret"))
    try:
        EdgeClient(server.url).wait_ready(timeout=120)
        data = SplitDevice(MODEL, "text", EdgeClient(server.url, credentials=Credentials("token", "s3cret"))).encode(images[0])[0]
        head = b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        auth = b"Authorization: Bearer s3cret\r\n"
        n = str(len(data)).encode()
        for extra in (b"Content-Length: " + n + b"\r\nContent-Length: " + n + b"\r\n",
                      b"Content-Length: +" + n + b"\r\n",
                      b"Content-Length: " + n + b"\r\nTransfer-Encoding: chunked\r\n"):
            assert raw_request(server, head + auth + extra + b"\r\n", data)[0] == 400
        assert raw_request(server, head + b"Content-Length: " + n + b"\r\n\r\n", data)[0] == 401
        with pytest.raises(ServiceError, match="401"):
            EdgeClient(server.url, credentials=Credentials("token", "wrong")).caption(data)
        idle = [socket.create_connection(server.server_address[:2]) for _ in range(6)]  # over the cap of 4
        time.sleep(0.3)
        late = idle[-1]
        late.settimeout(5)
        assert late.recv(1) == b""                                   # closed on arrival, no thread kept for it
        start = time.perf_counter()
        trickle = idle[0]
        trickle.settimeout(10)
        for byte in head[:20]:                                       # one byte every 0.2 s: each read is quick
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        assert trickle.recv(1) == b"" and time.perf_counter() - start < 6   # cut off at the request's deadline
        for sock in idle:
            sock.close()
        time.sleep(1.5)                                              # the others time out and free their slots
        assert EdgeClient(server.url, credentials=Credentials("token", "s3cret")).caption(data)["caption"]
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_an_hmac_key_serves_only_signed_unchanged_fresh_requests(images):
    """With an HMAC key the secret never travels: a request signed with it is served; an unsigned
    one, one signed with another key, one whose body was changed after signing (a forged payload
    with every check recomputed), a stale one and a replayed one get 401 in one line; the service
    goes on serving."""
    key = Credentials("hmac", "k3y")
    service = EdgeService(MODEL, "quantize-8")
    server, _ = start_server(service, credentials=key)
    try:
        EdgeClient(server.url).wait_ready(timeout=120)
        device = SplitDevice(MODEL, "quantize-8", EdgeClient(server.url, credentials=Credentials("hmac", "k3y")))
        data = device.encode(images[0])[0]
        other = device.encode(images[1])[0]
        assert device.caption_one(images[0])["caption"] == FileDecoder().decode(data)[0]
        head = b"POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"

        def send(body, headers):
            extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            return raw_request(server, head + extra + f"Content-Length: {len(body)}\r\n\r\n".encode(), body)

        signed = Credentials("hmac", "k3y").headers(data)
        assert send(data, signed)[0] == 200
        status, answer = send(data, signed)                                     # the same request again
        assert status == 401 and "replayed" in answer["error"]
        assert send(data, {})[0] == 401                                          # unsigned
        assert send(data, Credentials("hmac", "other").headers(data))[0] == 401  # another key
        status, answer = send(other, Credentials("hmac", "k3y").headers(data))   # body swapped after signing
        assert status == 401 and "does not match" in answer["error"]
        stale = Credentials("hmac", "k3y").headers(data, now=time.time() - 600)
        status, answer = send(data, stale)
        assert status == 401 and "clock" in answer["error"]
        with pytest.raises(ServiceError, match="401"):
            EdgeClient(server.url, credentials=Credentials("token", "k3y")).caption(data)  # a bearer token is not a signature
        assert device.caption_one(images[1])["caption"] == FileDecoder().decode(other)[0]
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_credentials_come_from_one_environment_variable():
    from intelliflow.deploy.auth import credentials_from_env
    from intelliflow.errors import ConfigError

    assert credentials_from_env({}) is None
    assert credentials_from_env({"INTELLIFLOW_HMAC_KEY": "k"}).kind == "hmac"
    assert credentials_from_env({"INTELLIFLOW_TOKEN": "t"}).kind == "token"
    with pytest.raises(ConfigError, match="not both"):
        credentials_from_env({"INTELLIFLOW_TOKEN": "t", "INTELLIFLOW_HMAC_KEY": "k"})
