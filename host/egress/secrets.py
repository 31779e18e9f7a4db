"""Tenant secrets: stored encrypted, substituted into a request on its way out, taken out
of its response on the way back.

The guest never holds a secret. It writes `{{secret:NAME}}` in a header value or the body
of an http_fetch request; after the egress checks the host puts the value there, and
before the response reaches the guest (and from there maybe a journaled step result) the
host replaces every occurrence of that value with the placeholder again. Values are
sealed with AES-256-GCM, the tenant and the name bound in as associated data, so a sealed
value moved to another tenant's row does not open. The key comes from DWF_SECRET_KEY, or
from a key file (mode 0600) created beside the database on first use.
"""

from __future__ import annotations

import base64
import os
import re
import secrets as random_bytes
import stat
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.errors import InvalidInput

KEY_ENV = "DWF_SECRET_KEY"
KEY_FILE_ENV = "DWF_SECRET_KEY_FILE"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
PLACEHOLDER = re.compile(r"\{\{secret:([A-Za-z0-9_]{1,64})\}\}")
MAX_SECRET_BYTES = 64 * 1024
_NONCE = 12


class SecretKeyUnavailable(InvalidInput):
    """No key to seal or open secrets with (or one that is unsafe to use)."""


def secret_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(f"invalid secret name {value!r}: use 1-64 characters of "
                           "[A-Za-z0-9_]")
    return value


class SecretBox:
    """Seals and opens secret values with the host's secret key (loaded on first use)."""

    def __init__(self, key_file: Path | None) -> None:
        self._key_file = key_file
        self._aead: AESGCM | None = None
        self._lock = threading.Lock()

    def seal(self, tenant_id: str, name: str, value: str) -> bytes:
        raw = value.encode()
        if not 1 <= len(raw) <= MAX_SECRET_BYTES:
            raise InvalidInput(f"a secret value must be 1-{MAX_SECRET_BYTES} bytes, "
                               f"got {len(raw)}")
        nonce = random_bytes.token_bytes(_NONCE)
        return nonce + self._cipher().encrypt(nonce, raw, _bound(tenant_id, name))

    def open(self, tenant_id: str, name: str, sealed: bytes) -> str:
        try:
            return self._cipher().decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                          _bound(tenant_id, name)).decode()
        except InvalidTag:
            raise SecretKeyUnavailable(
                f"secret {name!r} of tenant {tenant_id!r} does not open with this host's "
                f"secret key ({self._where()}): it was sealed with another key") from None

    def _cipher(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                self._aead = AESGCM(self._load_key())
            return self._aead

    def _where(self) -> str:
        if os.environ.get(KEY_ENV):
            return KEY_ENV
        return str(self._key_path() or KEY_ENV)

    def _key_path(self) -> Path | None:
        configured = os.environ.get(KEY_FILE_ENV)
        return Path(configured) if configured else self._key_file

    def _load_key(self) -> bytes:
        text = os.environ.get(KEY_ENV)
        if text:
            return _decode_key(text, KEY_ENV)
        path = self._key_path()
        if path is None:
            raise SecretKeyUnavailable(
                f"no secret key: set {KEY_ENV} (32 random bytes, base64) or {KEY_FILE_ENV}")
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretKeyUnavailable(
                    f"the secret key file {path} is readable by others: chmod 600 it") from None
            return _decode_key(path.read_text(), str(path))
        key = random_bytes.token_bytes(32)
        with os.fdopen(descriptor, "w") as out:
            out.write(base64.urlsafe_b64encode(key).decode() + "\n")
        return key


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SecretKeyUnavailable(f"{where} must hold 32 random bytes in base64, e.g. from "
                                   "`python -c 'import os,base64; "
                                   "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`")
    return key


def _bound(tenant_id: str, name: str) -> bytes:
    return f"{tenant_id}\0{name}".encode()


def names_in(text: str | bytes) -> set[str]:
    """The secret names a header value or body refers to."""
    if isinstance(text, bytes):
        return {match.decode() for match in re.findall(PLACEHOLDER.pattern.encode(), text)}
    return set(PLACEHOLDER.findall(text))


def substitute(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def substitute_bytes(data: bytes, values: dict[str, str]) -> bytes:
    return re.sub(PLACEHOLDER.pattern.encode(),
                  lambda match: values[match.group(1).decode()].encode(), data)


def scrub(data: bytes, values: dict[str, str]) -> bytes:
    """`data` with every secret value in it put back as its placeholder."""
    for name, value in values.items():
        data = data.replace(value.encode(), f"{{{{secret:{name}}}}}".encode())
    return data
