"""Encryption of stored secrets and resolution of secret references.

Secrets are encrypted with Fernet; several keys form a MultiFernet (newest first) so
keys can be rotated: new ciphertexts use the first key, old ones still decrypt. Keys
come from ``POSTROOM_SECRET_KEYS`` (comma-separated) or from a key file created with
mode 0600 in the data directory on first use.

A secret value may be a *reference* instead of the secret itself: ``env:NAME`` reads an
environment variable, ``file:/path`` reads a file; both are resolved at use, so the
secret never enters the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from postroom.errors import SecretKeyError, SecretReferenceError

__all__ = ["SecretBox", "is_reference", "load_keys", "resolve_secret"]

_REFERENCE_PREFIXES = ("env:", "file:")


def _parse_key(raw: str, source: str) -> Fernet:
    try:
        return Fernet(raw.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SecretKeyError(
            f"{source} holds a value that is not a Fernet key (32 url-safe base64-encoded "
            "bytes). Generate one with `postroom keys generate`."
        ) from None


def load_keys(*, env_value: str | None, key_file: Path, create: bool = True) -> list[str]:
    """Return the configured keys, newest first.

    ``env_value`` (``POSTROOM_SECRET_KEYS``) wins over the key file. Without either, a
    new key file is created with mode 0600 when ``create`` is true.
    """
    if env_value:
        keys = [k.strip() for k in env_value.split(",") if k.strip()]
        if not keys:
            raise SecretKeyError("POSTROOM_SECRET_KEYS is set but holds no key.")
        for key in keys:
            _parse_key(key, "POSTROOM_SECRET_KEYS")
        return keys
    if key_file.exists():
        keys = [line.strip() for line in key_file.read_text("ascii").splitlines() if line.strip()]
        if not keys:
            raise SecretKeyError(
                f"The key file {key_file} is empty. Restore it from your backup: without it "
                "stored passwords cannot be decrypted."
            )
        for key in keys:
            _parse_key(key, f"The key file {key_file}")
        return keys
    if not create:
        raise SecretKeyError(f"No secret key: set POSTROOM_SECRET_KEYS or restore {key_file}.")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_keys(env_value=None, key_file=key_file, create=False)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return [key]


def write_key_file(key_file: Path, keys: list[str]) -> None:
    """Atomically replace the key file (mode 0600) with ``keys``, newest first."""
    tmp = key_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(keys) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, key_file)


class SecretBox:
    """Encrypts and decrypts secrets with the configured keys (the first one encrypts)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretKeyError("At least one secret key is required.")
        self._keys = list(keys)
        self._fernet = MultiFernet([_parse_key(k, "secret key") for k in keys])

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str, *, what: str = "a stored secret") -> str:
        """Decrypt; raises :class:`SecretKeyError` naming ``what`` when it cannot."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                f"Cannot decrypt {what}: it was modified, or encrypted with a key that is not "
                "configured. Check POSTROOM_SECRET_KEYS or the key file, or set the secret again."
            ) from None

    def rotate(self, ciphertext: str, *, what: str = "a stored secret") -> str:
        """Re-encrypt under the primary key."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError(
                f"Cannot re-encrypt {what}: no configured key decrypts it."
            ) from None


def is_reference(value: str) -> bool:
    return value.startswith(_REFERENCE_PREFIXES)


def resolve_secret(value: str) -> str:
    """Return the secret itself: a plain value as is, ``env:``/``file:`` references resolved."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise SecretReferenceError(
                f"The secret refers to the environment variable {name}, which is not set."
            )
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretReferenceError(
                f"The secret refers to the file {path}, which cannot be read ({exc.strerror})."
            ) from None
    return value
