"""Compact HMAC-signed tokens: offer tokens bind a quote, session tokens bind one account."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson

from service.domain.errors import DomainError

SESSION_PREFIX = "ust_"
OFFER_PREFIX = "uot_"


class InvalidToken(DomainError):
    code = "invalid_token"
    title = "Invalid token"
    status = 401


class ExpiredToken(InvalidToken):
    code = "token_expired"
    title = "Token expired"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies `prefix + payload.signature`; the purpose is part of what is signed.

    A genuine token's claims are remembered (bounded): a session token is presented on every
    page load, and whether a token is genuine never changes. Expiry is checked on every use.
    """

    MEMO_ENTRIES = 100_000

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"upshift-tokens:" + secret.encode()).digest()
        # The HMAC state after the key: each signature goes on from a copy of it.
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)
        self._seal_key = hmac.digest(self._key, b"upshift sealed data", "sha256")
        self._genuine: dict[str, dict[str, Any]] = {}

    def _mac(self, prefix: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{prefix}{body}".encode(), hashlib.sha256).digest())

    def sign(self, prefix: str, claims: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
        return f"{prefix}{body}.{self._mac(prefix, body)}"

    def template(
        self, prefix: str, claims: Mapping[str, Any], varying: Sequence[str]
    ) -> ClaimsTemplate:
        """Tokens of `claims` plus the `varying` claims, given on each `ClaimsTemplate.sign`."""
        return ClaimsTemplate(self, prefix, claims, varying)

    def seal(self, data: bytes) -> bytes:
        """`data` with a MAC of its own purpose's key in front: what the service stores and
        must know, when it reads it back, that it wrote itself (api.page_store)."""
        return hmac.digest(self._seal_key, data, "sha256") + data

    def unseal(self, sealed: bytes) -> bytes | None:
        """The data of a `seal` made with this secret; None for anything else."""
        mac, data = sealed[:32], sealed[32:]
        expected = hmac.digest(self._seal_key, data, "sha256")
        return data if hmac.compare_digest(mac, expected) else None

    def keyed(self) -> hmac.HMAC:
        """A fresh HMAC of the signer's key, nothing hashed yet."""
        return self._keyed.copy()

    def __reduce__(self) -> NoReturn:
        # Its key is derived from the secret: it never goes into a pickle (see ClaimsTemplate).
        raise TypeError("a TokenSigner holds a secret and is never pickled")

    def verify(self, prefix: str, token: str, now: datetime) -> dict[str, Any]:
        """The claims of a genuine, unexpired token of this kind; InvalidToken otherwise."""
        return dict(self.claims(prefix, token, now))

    def claims(self, prefix: str, token: str, now: datetime) -> Mapping[str, Any]:
        """`verify` without the copy: the remembered claims, to read only."""
        claims = self._genuine.get(token)
        if claims is None or not token.startswith(prefix):
            claims = self._check(prefix, token)
            if len(self._genuine) >= self.MEMO_ENTRIES:
                self._genuine.clear()
            self._genuine[token] = claims
        if claims["exp"] <= int(now.timestamp()):
            raise ExpiredToken("token has expired")
        return claims

    def _check(self, prefix: str, token: str) -> dict[str, Any]:
        if not token.startswith(prefix) or token.count(".") != 1:
            raise InvalidToken("malformed token")
        body, signature = token[len(prefix) :].split(".")
        if not hmac.compare_digest(signature, self._mac(prefix, body)):
            raise InvalidToken("token signature does not match")
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            raise InvalidToken("malformed token") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            raise InvalidToken("malformed token")
        return claims


_URLSAFE = bytes.maketrans(b"+/", b"-_")


class ClaimsTemplate:
    """Signs tokens whose claims differ only in a few values, byte for byte as `TokenSigner.sign`.

    The payload is the claims' JSON with sorted keys; everything before the first varying value
    is the same in every token, so its base64 (in whole three-byte groups) and the HMAC state
    after it are computed once, and each signature copies that state (`hmac.HMAC.copy`).
    """

    def __init__(
        self, signer: TokenSigner, prefix: str, claims: Mapping[str, Any], varying: Sequence[str]
    ) -> None:
        if list(varying) != sorted(varying) or set(varying) & set(claims):
            raise ValueError("varying claims must be sorted and not among the fixed ones")
        chunks: list[bytes] = []
        text = b"{"
        for index, name in enumerate(sorted([*claims, *varying])):
            text += (b"," if index else b"") + orjson.dumps(name) + b":"
            if name in varying:
                chunks.append(text)
                text = b""
            else:
                text += orjson.dumps(claims[name], option=orjson.OPT_SORT_KEYS)
        chunks.append(text + b"}")
        aligned = len(chunks[0]) - len(chunks[0]) % 3
        chunks[0], head = chunks[0][aligned:], prefix + _b64(chunks[0][:aligned])
        self._restore(signer, head, b"%s".join(chunk.replace(b"%", b"%%") for chunk in chunks))

    def _restore(self, signer: TokenSigner, head: str, format: bytes) -> None:
        self._signer = signer
        self._head = head
        self._format = format
        self._mac = signer.keyed()
        self._mac.update(head.encode())

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the signer, the head and the format, never the HMAC state (derived from
        the secret): a pickler must stand the signer for a reference (see api.page_store), and
        the state is derived again from the signer it stands for when unpickled."""
        return (_restored_template, (self._signer, self._head, self._format))

    def sign(self, *values: int | str) -> str:
        """The token with the varying claims set to `values`, in their (sorted) order."""
        tail = self._format % tuple(map(orjson.dumps, values))
        encoded = binascii.b2a_base64(tail, newline=False).translate(_URLSAFE).rstrip(b"=")
        mac = self._mac.copy()
        mac.update(encoded)
        signature = binascii.b2a_base64(mac.digest(), newline=False).translate(_URLSAFE)
        return f"{self._head}{encoded.decode()}.{signature.rstrip(b'=').decode()}"


def _restored_template(signer: TokenSigner, head: str, format: bytes) -> ClaimsTemplate:
    template = ClaimsTemplate.__new__(ClaimsTemplate)
    template._restore(signer, head, format)
    return template


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def issue_session_token(
    signer: TokenSigner, account_id: str, now: datetime, ttl_seconds: int
) -> tuple[str, datetime]:
    """A short-lived token for a browser: it may read and upgrade this one account only."""
    expires_at = from_unix(unix(now) + ttl_seconds)
    claims = {"acc": account_id, "exp": unix(expires_at), "jti": secrets.token_hex(8)}
    return signer.sign(SESSION_PREFIX, claims), expires_at
