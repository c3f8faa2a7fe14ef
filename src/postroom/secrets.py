"""Encryption of stored secrets and resolution of secret references.

Secrets are encrypted with Fernet; several keys form a MultiFernet (newest first) so
keys can be rotated: new ciphertexts use the first key, old ones still decrypt. Keys
come from ``POSTROOM_SECRET_KEYS`` (comma-separated) or from a key file created with
mode 0600 in the data directory on first use.

A secret value may be a *reference* instead of the secret itself: ``env:NAME`` reads an
environment variable, ``file:/path`` reads a file; both are resolved at use, so the
secret never enters the database. References are the operator's tool: an administrator
(REST, web UI) may store one only inside the allow-list the operator configured
(:class:`SecretReferences`), and nobody can name postroom's own keys (the key file,
``POSTROOM_SECRET_KEYS``) — otherwise a profile could send them as a password to any server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from postroom.errors import ConfigurationError, SecretKeyError, SecretReferenceError

__all__ = ["KeyRotation", "SecretBox", "SecretReferences", "is_reference", "load_keys"]

_REFERENCE_PREFIXES = ("env:", "file:")
#: Variables that hold postroom's own secrets; no reference may name them.
OWN_ENV = frozenset({"POSTROOM_SECRET_KEYS", "POSTROOM_DATABASE_URL"})
#: /proc/<pid>/environ holds the keys too; nothing under /proc is a password file.
_NEVER_UNDER = (Path("/proc"),)


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
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def __init__(self, keys: list[str], *, references: SecretReferences | None = None) -> None:
        if not keys:
            raise SecretKeyError("At least one secret key is required.")
        self._keys = list(keys)
        self._fernet = MultiFernet([_parse_key(k, "secret key") for k in keys])
        #: who may store which references, and how they are resolved at use
        self.references = references if references is not None else SecretReferences()

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


class KeyRotation(SecretBox):
    """The box of a key rotation: :meth:`rotate` skips what no key decrypts, and remembers it.

    One unreadable row (tampered, or from a lost key) must not stop every other secret
    from moving to the new key; ``skipped`` names each one for the operator.
    """

    def __init__(self, keys: list[str], *, references: SecretReferences | None = None) -> None:
        super().__init__(keys, references=references)
        self.rotated = 0
        self.skipped: list[str] = []

    def rotate(self, ciphertext: str, *, what: str = "a stored secret") -> str:
        try:
            out = super().rotate(ciphertext, what=what)
        except SecretKeyError:
            self.skipped.append(what)
            return ciphertext
        self.rotated += 1
        return out


def is_reference(value: str) -> bool:
    return value.startswith(_REFERENCE_PREFIXES)


#: The one message an administrator gets for any refused reference: it must not tell
#: whether a path exists, is a symlink or is readable.
REFUSED_FOR_ADMINS = (
    "is a secret reference (env:… or file:…), which only the operator may set (CLI, "
    "`profile apply -f`) unless it is on the operator's allow-list "
    "(POSTROOM_SECRET_REF_ENV, POSTROOM_SECRET_REF_PATHS); type the secret itself"
)
_OWN_KEYS = (
    "names postroom's own secret keys (the key file or POSTROOM_SECRET_KEYS), which can "
    "never be used as a secret"
)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


class SecretReferences:
    """Which ``env:``/``file:`` references are accepted, and their resolution at use.

    The operator (CLI flags, files the CLI reads) may reference any variable or file
    except postroom's own keys. Anyone else (REST, web UI, platform code) only
    variables named in ``allowed_env`` (a trailing ``*`` matches a prefix) and files
    under ``allowed_paths``. ``own_files`` (the key file) can never be referenced.
    """

    def __init__(
        self,
        *,
        allowed_env: Iterable[str] = (),
        allowed_paths: Iterable[str | Path] = (),
        own_files: Iterable[Path] = (),
    ) -> None:
        self.allowed_env = tuple(n.strip() for n in allowed_env if n.strip())
        self.allowed_paths = tuple(
            _real(Path(p)) for p in allowed_paths if str(p).strip() and Path(p).is_absolute()
        )
        self.own_files = tuple(Path(f) for f in own_files)

    @classmethod
    def from_strings(cls, env: str, paths: str, *, own_files: Iterable[Path]) -> SecretReferences:
        """From the comma-separated settings ``POSTROOM_SECRET_REF_ENV`` / ``_PATHS``.

        Raises :class:`ConfigurationError` for a path that is not absolute: a silently
        ignored entry would leave the operator wondering why references are refused.
        """
        prefixes = [p.strip() for p in paths.split(",") if p.strip()]
        relative = [p for p in prefixes if not Path(p).is_absolute()]
        if relative:
            raise ConfigurationError(
                "POSTROOM_SECRET_REF_PATHS must list absolute directories; not absolute: "
                + ", ".join(relative)
            )
        return cls(allowed_env=env.split(","), allowed_paths=prefixes, own_files=own_files)

    # -- what may be stored --------------------------------------------------------------

    def refusal(self, value: str, *, operator: bool) -> str | None:
        """Why ``value`` may not be stored as a secret (a field message), or None.

        A plain secret is always accepted. An administrator's refused reference always
        gets the same message, so the answer reveals nothing about the file system.
        """
        if not is_reference(value):
            return None
        if self._is_own(value):
            return _OWN_KEYS if operator else REFUSED_FOR_ADMINS
        if operator or self._allowed(value):
            return None
        return REFUSED_FOR_ADMINS

    def _allowed(self, value: str) -> bool:
        if value.startswith("env:"):
            name = value[4:]
            return bool(name) and any(
                name.startswith(rule[:-1]) if rule.endswith("*") else name == rule
                for rule in self.allowed_env
            )
        raw = value[5:]
        if not raw.startswith("/") or ".." in Path(raw).parts:
            return False
        real = _real(Path(raw))
        return any(real.is_relative_to(prefix) for prefix in self.allowed_paths)

    def _is_own(self, value: str) -> bool:
        if value.startswith("env:"):
            return value[4:] in OWN_ENV
        raw = value[5:]
        if not raw:
            return False
        real = _real(Path(raw))
        if any(real.is_relative_to(p) for p in _NEVER_UNDER):
            return True
        for own in self.own_files:
            if real == _real(own) or real == _real(own.with_suffix(".tmp")):
                return True
            try:
                if os.path.samefile(real, own):  # a hard link to the key file
                    return True
            except OSError:
                pass
        return False

    # -- at use --------------------------------------------------------------------------

    def resolve(self, value: str, *, what: str = "the secret") -> str:
        """The secret itself: a plain value as is, a reference read now.

        Raises :class:`SecretReferenceError` when it cannot be read or names postroom's
        own keys. The message names the reference but never why a file could not be read.
        """
        if not is_reference(value):
            return value
        if self._is_own(value):
            raise SecretReferenceError(f"{what.capitalize()} {_OWN_KEYS}; set it again.")
        if value.startswith("env:"):
            name = value[4:]
            if name not in os.environ:
                raise SecretReferenceError(
                    f"{what.capitalize()} refers to the environment variable {name}, "
                    "which is not set for postroom."
                )
            return os.environ[name]
        path = Path(value[5:])
        try:
            return path.read_text("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            raise SecretReferenceError(
                f"{what.capitalize()} refers to the file {path}, which postroom cannot read "
                "as text."
            ) from None
