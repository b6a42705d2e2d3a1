"""How answers are read (transfer): origins, and bodies decoded under a cap piece by piece."""

import asyncio
import gzip
import zlib

import httpx
import pytest

from dunebugger_updater.release.transfer import (
    PIECE,
    TransferError,
    bearer,
    deadline,
    decoded_pieces,
    origin,
    read_body,
)

URL = "https://api.github.com/repos/o/r/releases/latest"


@pytest.mark.parametrize(("one", "other", "same"), [
    ("https://api.github.com", "https://api.github.com:443/repos", True),
    ("http://127.0.0.1", "http://127.0.0.1:80/x", True),
    ("HTTPS://API.GitHub.com", "https://api.github.com", True),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8081", False),   # another port of the same host
    ("https://127.0.0.1:443", "http://127.0.0.1:443", False),     # another scheme
    ("http://127.0.0.1:8080", "http://localhost:8080", False),    # names are not resolved
    ("https://api.github.com", "https://api.github.com.evil.example", False),
])
def test_origins(one, other, same):
    assert (origin(one) == origin(other)) is same


def test_the_token_goes_to_its_own_origin_only():
    home = origin("http://127.0.0.1:8080")
    assert bearer("t0ken", "http://127.0.0.1:8080/repos/x", home) == {"Authorization": "Bearer t0ken"}
    assert bearer("t0ken", "http://127.0.0.1:8081/repos/x", home) == {}
    assert bearer(None, "http://127.0.0.1:8080/repos/x", home) == {}


class Body(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    async def __aiter__(self):
        for chunk in self._chunks:
            yield chunk


def answer(*chunks: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={k.replace("_", "-"): v for k, v in headers.items()},
                          stream=Body(*chunks), request=httpx.Request("GET", URL))


async def pieces_of(response: httpx.Response, limit: int = 1 << 30) -> list[bytes]:
    return [piece async for piece in decoded_pieces(response, limit)]


async def test_gzip_members_one_after_another_are_all_decoded_in_bounded_pieces():
    data = gzip.compress(b"a" * 300_000) + gzip.compress(b"b" * 300_000)
    pieces = await pieces_of(answer(data[:1000], data[1000:], content_encoding="gzip"))
    assert b"".join(pieces) == b"a" * 300_000 + b"b" * 300_000
    assert max(len(piece) for piece in pieces) <= PIECE


async def test_deflate_is_decoded():
    assert await read_body(answer(zlib.compress(b"x" * 1000), content_encoding="deflate"), 2000) == b"x" * 1000


async def test_a_bomb_stops_at_the_cap_after_at_most_one_piece_too_many():
    bomb = gzip.compress(bytes(64 * 1024 * 1024))  # 64 MiB from 64 KB
    produced = []
    with pytest.raises(TransferError, match=f"the answer from {URL} is larger than the cap of 1000000 bytes"):
        async for piece in decoded_pieces(answer(bomb, content_encoding="gzip"), 1_000_000):
            produced.append(len(piece))
    assert sum(produced) <= 1_000_000


@pytest.mark.parametrize(("encoding", "expect"), [
    ("gzip, gzip", "stacked Content-Encoding 'gzip, gzip'"),
    ("gzip,deflate", "stacked Content-Encoding 'gzip, deflate'"),
    ("br", "unsupported Content-Encoding 'br'"),
    ("zstd", "unsupported Content-Encoding 'zstd'"),
    ("x-foo", "unsupported Content-Encoding 'x-foo'"),
])
async def test_stacked_and_unknown_encodings_are_refused_unread(encoding, expect):
    with pytest.raises(TransferError, match=expect):
        await pieces_of(answer(b"never read", content_encoding=encoding))


async def test_identity_layers_are_no_layers():
    assert await read_body(answer(gzip.compress(b"ok"), content_encoding="identity, gzip"), 10) == b"ok"
    assert await read_body(answer(b"plain", content_encoding="identity"), 10) == b"plain"


@pytest.mark.parametrize(("body", "expect"), [
    (gzip.compress(b"z" * 100_000)[:-20], "ends before its compressed stream does"),
    (b"\x1f\x8b\x08\x00garbage-garbage-garbage", "is corrupt"),
    (gzip.compress(b"ok") + b"trailing junk", "is corrupt"),
])
async def test_cut_or_corrupt_gzip_is_refused(body, expect):
    with pytest.raises(TransferError, match=expect):
        await pieces_of(answer(body, content_encoding="gzip"))


async def test_a_declared_length_over_the_cap_is_refused_before_reading():
    with pytest.raises(TransferError, match=r"larger than the cap of 10 bytes \(Content-Length: 11\)"):
        await pieces_of(answer(b"x" * 11, content_length="11"), 10)


async def test_the_deadline_names_host_setting_and_url_and_no_other_timeout():
    with pytest.raises(TransferError, match=r"no complete answer from h:8080 within 0.05 s \(httpTimeoutSeconds\) for http://h:8080/x"):
        async with deadline(0.05, "http://h:8080/x", "httpTimeoutSeconds"):
            await asyncio.sleep(1)
    with pytest.raises(TimeoutError) as other:
        async with deadline(5, "http://h:8080/x", "httpTimeoutSeconds"):
            raise TimeoutError("a timeout of something else")
    assert str(other.value) == "a timeout of something else"
