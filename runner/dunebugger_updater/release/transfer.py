"""How every HTTP answer is read: within a wall-clock deadline, decoded by us under a
size cap, and with secrets only for the exact origin they belong to.

httpx would undo `Content-Encoding` itself, a whole network chunk at a time: a few KB
of gzip (or of gzip inside gzip) inflate to gigabytes in one step, before any cap sees
them. So requests ask for `gzip` at most, the raw bytes are read, and they are inflated
at most `PIECE` bytes at a time, each piece counted against the cap as it is produced.
One layer of gzip or deflate is accepted; stacked (`gzip, gzip`) and other encodings
(`br`, `zstd`, `x-foo`) are refused. httpx's timeout bounds one read only, so a peer
that trickles a byte at a time is stopped by a deadline around the whole exchange.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx

from ..tokens import token_problem

ACCEPT_ENCODING = "gzip"  # identity is always acceptable too
INFLATED_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})
PIECE = 64 * 1024  # the most bytes one inflate step may produce
DEFAULT_PORTS = {"http": 80, "https": 443}
AUTO_HEADER = 32 + zlib.MAX_WBITS  # zlib reads a gzip or a zlib (deflate) header, whichever comes

Origin = tuple[str, str, int | None]


class TransferError(Exception):
    """An answer refused while it was read. It never leaves the package: callers turn
    it into their own boundary's error (ReleaseLookupError, DownloadError)."""


def origin(url: str | httpx.URL) -> Origin:
    """(scheme, host, port) with the default port spelled out: where a secret may go."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or DEFAULT_PORTS.get(parsed.scheme)


def bearer(token: str | None, url: str | httpx.URL, home: Origin) -> dict[str, str]:
    """The Authorization header for `url`: only when it is on the token's own origin, and
    only for a token a header can carry (else httpx's error would quote the header)."""
    if not token or origin(url) != home:
        return {}
    problem = token_problem(token)
    if problem:
        raise TransferError(f"the API token (githubToken or GITHUB_TOKEN) {problem}")
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def deadline(seconds: float, url: str | httpx.URL, setting: str) -> AsyncIterator[None]:
    """The exchange inside must be over within `seconds`, however its bytes trickle in."""
    budget = asyncio.timeout(seconds)
    try:
        async with budget:
            yield
    except TimeoutError:
        if not budget.expired():
            raise  # some other timeout: not this deadline's story
        raise too_slow(url, seconds, setting) from None


def too_slow(url: str | httpx.URL, seconds: float, setting: str) -> TransferError:
    return TransferError(f"no complete answer from {_netloc(url)} within {seconds:g} s ({setting}) for {url}")


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, refused once it passes `limit` bytes."""
    return b"".join([piece async for piece in decoded_pieces(response, limit)])


async def decoded_pieces(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The decoded body as it is produced, refused once it passes `limit` bytes."""
    url = response.request.url
    decoder = _decoder(response)
    if isinstance(decoder, _Identity):
        _check_declared_length(response, limit)
    size = 0
    async for raw in response.aiter_raw():
        for piece in decoder.feed(raw):
            size += len(piece)
            if size > limit:
                raise TransferError(f"the answer from {url} is larger than the cap of {limit} bytes")
            yield piece
    decoder.finish()


def _check_declared_length(response: httpx.Response, limit: int) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TransferError(
            f"the answer from {response.request.url} is larger than the cap of {limit} bytes "
            f"(Content-Length: {declared})"
        )


def _decoder(response: httpx.Response) -> _Identity | _Inflater:
    url = response.request.url
    listed = response.headers.get_list("content-encoding", split_commas=True)
    layers = [name.strip().lower() for name in listed if name.strip().lower() not in ("", "identity")]
    if len(layers) > 1:
        raise TransferError(
            f"the answer from {url} has stacked Content-Encoding {', '.join(layers)!r}: "
            "at most one layer of gzip or deflate is accepted"
        )
    if not layers:
        return _Identity()
    if layers[0] not in INFLATED_ENCODINGS:
        raise TransferError(
            f"the answer from {url} has the unsupported Content-Encoding {layers[0]!r} (accepted: gzip, deflate)"
        )
    return _Inflater(layers[0], str(url))


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finish(self) -> None:
        pass


class _Inflater:
    """gzip (member after member, as RFC 1952 allows) or zlib-wrapped deflate, inflated
    at most PIECE bytes per step so that the reader's cap sees every piece."""

    def __init__(self, encoding: str, url: str) -> None:
        self._encoding, self._url = encoding, url
        self._stream = zlib.decompressobj(AUTO_HEADER)
        self._midway = False  # bytes went into the current stream and its end is not reached

    def feed(self, data: bytes) -> Iterator[bytes]:
        piece = b""
        # A full piece means zlib may hold more output back: ask again, even without input.
        while data or len(piece) == PIECE:
            piece = self._inflate(data)
            if piece:
                yield piece
            data = self._rest()

    def finish(self) -> None:
        if self._midway:
            raise TransferError(f"the {self._encoding} body of {self._url} ends before its compressed stream does")

    def _inflate(self, data: bytes) -> bytes:
        self._midway = self._midway or bool(data)
        try:
            return self._stream.decompress(data, PIECE)
        except zlib.error as exc:
            raise TransferError(f"the {self._encoding} body of {self._url} is corrupt: {exc}") from None

    def _rest(self) -> bytes:
        """Input still to inflate: what this step left over, or what follows a finished member."""
        if not self._stream.eof:
            return self._stream.unconsumed_tail
        rest = self._stream.unused_data
        self._stream, self._midway = zlib.decompressobj(AUTO_HEADER), False
        return rest


def _netloc(url: str | httpx.URL) -> str:
    parsed = httpx.URL(url)
    return parsed.netloc.decode("ascii", "replace") or str(url)
