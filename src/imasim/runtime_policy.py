"""Keylime runtime policies (format version 1): reference values for a measurement list.

A runtime policy says which file digests each path may have (``digests``), which paths
are not judged at all (``excludes``, Python regular expressions matched at the start of
the path), which digests the keys measured into each keyring may have (``keyrings``,
ima-buf entries whose buffer is a key), which digests other ima-buf entries may have
(``ima-buf``), which keyrings are not judged (``ima.ignored_keyrings``, ``"*"`` for all),
the template-hash algorithm of the list (``ima.log_hash_alg``) and the public keys that
may sign files (``verification-keys``: a JSON string of Keylime's ImaKeyring, base64 DER
SubjectPublicKeyInfo keys with their keyidv2). :meth:`RuntimePolicy.from_keylime_json`
reads what ``keylime-policy create runtime`` writes and :meth:`RuntimePolicy.to_keylime_json`
writes what Keylime's verifier accepts (its JSON schema, ``keylime/ima/ima.py``).

:func:`create_runtime_policy` makes a policy as ``keylime-policy create runtime`` does
from a measurement list (``--ima-measurement-list``, ``--keyrings``, ``--ima-buf``) or
from file digests (``--rootfs``, see :func:`imasim.io.tree_digests`).

>>> from imasim.ima import ima_ng_entry
>>> from imasim.algorithms import HashAlgorithm as H
>>> e = ima_ng_entry("/usr/bin/true", H.SHA256.hash(b"true"), H.SHA256)
>>> p = create_runtime_policy([e])
>>> sorted(p.digests)
['/usr/bin/true']
>>> RuntimePolicy.from_keylime_json(p.to_keylime_json()) == p
True
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .algorithms import HashAlgorithm
from .errors import ParseError, UsageError
from .ima.entry import MeasurementEntry

if TYPE_CHECKING:  # imported when keys are read (the CLI's start-up stays small)
    from .keys.key import Key

__all__ = [
    "KEYLIME_GENERATOR_LEGACY_ALLOWLIST",
    "DigestTable",
    "RuntimePolicy",
    "buffer_public_key",
    "create_runtime_policy",
]

KEYLIME_GENERATOR_LEGACY_ALLOWLIST: Final = 3  # RUNTIME_POLICY_GENERATOR.LegacyAllowList
_LOG_HASH_ALGS: Final = ("sha1", "sha256", "sha384", "sha512")


class DigestTable(Mapping[str, frozenset[bytes]]):
    """A policy section's name -> allowed digests (bytes), read-only.

    A name with one digest (nearly every name of a policy made from a file tree) is
    stored as that one bytes object and read as a one-element frozenset: a policy of
    100,000 paths is then one dict of bytes, made in one pass over the JSON.

    >>> t = DigestTable.from_hex({"/bin/sh": ["AB" * 20], "/bin/x": ["00" * 32, "11" * 32]})
    >>> t["/bin/sh"] == {bytes.fromhex("ab" * 20)}, len(t["/bin/x"]), "/bin/y" in t
    (True, 2, False)
    >>> sorted(t.hex()["/bin/sh"])
    ['abababababababababababababababababababab']
    >>> t.allows("/bin/sh", bytes.fromhex("ab" * 20)), t.allows("/bin/y", bytes(20))
    (True, None)
    >>> DigestTable({"/bin/sh": [bytes(20)]})["/bin/sh"] == {bytes(20)}
    True
    """

    __slots__ = ("_d", "_derived")

    def __init__(self, table: Mapping[str, Iterable[bytes]] | None = None) -> None:
        """A table from name -> digests (bytes); every name needs at least one."""
        self._d: dict[str, bytes | frozenset[bytes]] = {}
        #: what verifiers derive from this (immutable) table, kept for the next list
        #: (imasim.attest's allowed records); never part of its value
        self._derived: dict[Any, Any] = {}
        for name, digests in (table or {}).items():
            ds = frozenset(digests)
            if not isinstance(name, str) or not ds or \
                    not all(isinstance(d, bytes) and d for d in ds):
                raise UsageError(f"digest table entry {name!r}: a name and at least one "
                                 "non-empty bytes digest")
            self._d[name] = next(iter(ds)) if len(ds) == 1 else ds

    @classmethod
    def from_hex(cls, doc: Any, section: str = "digests") -> DigestTable:
        """A ``{name: [hex, ...]}`` section as Keylime's schema allows it (40-128 hex
        digits, at least one per name, either case): every bad name or digest is a
        :class:`~imasim.errors.ParseError` naming the section."""
        if not isinstance(doc, Mapping):
            raise ParseError(f"{section!r} must be an object of name -> [digest]",
                             field=section)
        out: dict[str, bytes | frozenset[bytes]] = {}
        fromhex = bytes.fromhex
        for name, digests in doc.items():
            # the usual case, checked inline: one digest of hex digits only (fromhex
            # also takes spaces, which the length test refuses)
            if type(digests) is list and len(digests) == 1 and type(name) is str:
                d = digests[0]
                if type(d) is str and 40 <= len(d) <= 128:
                    try:
                        b = fromhex(d)
                    except ValueError:
                        b = b""
                    if 2 * len(b) == len(d):
                        out[name] = b
                        continue
            out[name] = cls._digests(name, digests, section)
        t = cls()
        t._d = out
        return t

    @staticmethod
    def _digests(name: Any, digests: Any, section: str) -> frozenset[bytes]:
        if not isinstance(name, str):
            raise ParseError(f"{section} name {name!r} is not a string", field=section)
        if not isinstance(digests, list | tuple | frozenset | set) or not digests:
            raise ParseError(f"{section}[{name!r}] must be a non-empty list of digests",
                             field=section)
        out = []
        for d in digests:
            if type(d) is not str or not 40 <= len(d) <= 128:
                raise ParseError(f"{section}[{name!r}] holds {d!r}, not 40-128 hex digits",
                                 field=section)
            try:
                b = bytes.fromhex(d)
            except ValueError as exc:
                raise ParseError(f"bad digest in {section}: {exc}", field=section) from None
            if 2 * len(b) != len(d):
                raise ParseError(f"{section}[{name!r}] holds {d!r}, not 40-128 hex digits",
                                 field=section)
            out.append(b)
        return frozenset(out)

    def __getstate__(self) -> dict[str, bytes | frozenset[bytes]]:
        return self._d  # what was derived stays behind (a worker derives its own)

    def __setstate__(self, state: dict[str, bytes | frozenset[bytes]]) -> None:
        self._d = state
        self._derived = {}

    def __getitem__(self, name: str) -> frozenset[bytes]:
        v = self._d[name]
        return frozenset((v,)) if isinstance(v, bytes) else v

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"<DigestTable of {len(self._d)} names>"

    def allows(self, name: str, digest: bytes | None) -> bool | None:
        """Is ``digest`` allowed for ``name`` (None: the name is not in the table)?"""
        v = self._d.get(name)
        if v is None:
            return None
        return v == digest if isinstance(v, bytes) else digest in v

    def raw_items(self) -> Iterable[tuple[str, bytes | frozenset[bytes]]]:
        """(name, one digest or a frozenset of them), as stored: for callers that build
        their own index over a large table without a frozenset per name."""
        return self._d.items()

    def hex(self) -> Mapping[str, frozenset[str]]:
        """The same table with lower-case hex digests, as Keylime writes them."""
        return _HexView(self)


class _HexView(Mapping[str, frozenset[str]]):
    """A DigestTable read as hex strings (made on access)."""

    __slots__ = ("_t",)

    def __init__(self, table: DigestTable) -> None:
        self._t = table

    def __getitem__(self, name: str) -> frozenset[str]:
        return frozenset(d.hex() for d in self._t[name])

    def __contains__(self, name: object) -> bool:
        return name in self._t

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def _keys_from_keylime(text: str) -> tuple[Key, ...]:
    """Keylime's ImaKeyring JSON string (``{"keyids": [...], "pubkeys": [b64 DER]}``)."""
    if not text:
        return ()
    from .keys.key import Key
    try:
        obj = json.loads(text)
        if isinstance(obj, str):
            obj = json.loads(obj)
    except ValueError as exc:
        raise ParseError(f"verification-keys is not JSON: {exc}",
                         field="verification-keys") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("pubkeys"), list) or \
            not isinstance(obj.get("keyids"), list):
        raise ParseError("verification-keys must hold 'keyids' and 'pubkeys' lists",
                         field="verification-keys")
    keys = []
    for i, b64 in enumerate(obj["pubkeys"]):
        try:
            pub = serialization.load_der_public_key(base64.b64decode(b64, validate=True))
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ParseError(f"verification-keys pubkeys[{i}] is not a DER public key: {exc}",
                             field="verification-keys") from None
        if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ParseError(f"verification-keys pubkeys[{i}] is neither RSA nor EC",
                             field="verification-keys")
        key = Key.from_public_key(pub, description=f"verification-keys[{i}]")
        if i < len(obj["keyids"]):  # Keylime looks keys up by the keyidv2 stored beside them
            kid = obj["keyids"][i]
            if not isinstance(kid, int) or isinstance(kid, bool) or not 0 <= kid < 1 << 32:
                raise ParseError(f"verification-keys keyids[{i}] is not a 32-bit number",
                                 field="verification-keys")
            raw = kid.to_bytes(4, "big")
            key = Key(key.description, pub, (b"", raw, b""), skid=raw)
        keys.append(key)
    return tuple(keys)


def _keys_to_keylime(keys: Iterable[Key]) -> str:
    pubkeys, keyids = [], []
    for k in keys:
        der = k.public_key.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        pubkeys.append(base64.b64encode(der).decode("ascii"))
        keyids.append(int.from_bytes(k.key_id_v2, "big"))
    return json.dumps({"pubkeys": pubkeys, "keyids": keyids}) if pubkeys else ""


@dataclass(frozen=True, slots=True)
class RuntimePolicy:
    """A Keylime runtime policy: reference values for appraising a measurement list.

    Digests are lower-case hex strings, as Keylime stores them. ``allow_violations`` is
    not part of Keylime's format (Keylime fails every violation); it is kept for callers
    of :func:`imasim.attest.attest` that pass it here.
    """

    digests: Mapping[str, frozenset[str]]
    excludes: tuple[str, ...] = ()
    ignored_keyrings: frozenset[str] = frozenset()
    allow_violations: bool = False
    keyrings: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ima_buf: Mapping[str, frozenset[str]] = field(default_factory=dict)
    log_hash_alg: HashAlgorithm = HashAlgorithm.SHA1
    verification_keys: tuple[Key, ...] = ()
    release: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    digests_bytes: DigestTable = field(default_factory=DigestTable, compare=False, repr=False)
    keyrings_bytes: DigestTable = field(default_factory=DigestTable, compare=False, repr=False)
    ima_buf_bytes: DigestTable = field(default_factory=DigestTable, compare=False, repr=False)

    def __post_init__(self) -> None:
        # from_keylime_json passes the tables it made in the same pass
        for section, hexes, attr in (("digests", self.digests, "digests_bytes"),
                                     ("keyrings", self.keyrings, "keyrings_bytes"),
                                     ("ima-buf", self.ima_buf, "ima_buf_bytes")):
            if not isinstance(getattr(self, attr), DigestTable) or \
                    len(getattr(self, attr)) != len(hexes):
                object.__setattr__(self, attr, DigestTable.from_hex(hexes, section))
        if self.excludes:
            try:
                object.__setattr__(self, "_pattern",
                                   re.compile("|".join(f"(?:{e})" for e in self.excludes)))
            except re.error as exc:
                raise ParseError(f"bad exclude pattern: {exc}", field="excludes") from None

    # -- Keylime's JSON ---------------------------------------------------------------
    @classmethod
    def from_keylime_json(cls, text: str | bytes) -> RuntimePolicy:
        """Keylime's runtime policy JSON (version 1; a DSSE envelope's payload is not
        unwrapped: verify its signature with Keylime and pass the payload).

        Accepts the sections Keylime's schema has; missing sections are empty, as in
        Keylime's older allowlists. ``dm_policy`` other than null is refused (device
        mapper policies are not modelled)."""
        try:
            s = text.decode("utf-8") if isinstance(text, bytes) else text
        except UnicodeDecodeError as exc:
            raise ParseError(f"runtime policy is not UTF-8: {exc}", field="policy",
                             offset=exc.start) from None
        try:
            doc = json.loads(s)
        except ValueError as exc:
            raise ParseError(f"runtime policy is not JSON: {exc}", field="policy") from None
        except RecursionError:  # the C scanner recurses per nesting level
            raise ParseError("runtime policy nests too deeply", field="policy") from None
        if not isinstance(doc, dict):
            raise ParseError("a runtime policy is a JSON object", field="policy")
        if "payload" in doc and "digests" not in doc:
            raise ParseError("a DSSE-signed runtime policy: verify it and pass its payload",
                             field="policy")
        meta = doc.get("meta", {"version": 1})
        if not isinstance(meta, dict) or meta.get("version", 1) != 1:
            raise ParseError(f"runtime policy version {meta!r} is not 1", field="meta")
        ima = doc.get("ima", {})
        if not isinstance(ima, dict):
            raise ParseError("'ima' must be an object", field="ima")
        excludes = doc.get("excludes", [])
        ignored = ima.get("ignored_keyrings", [])
        if not isinstance(excludes, list) or not all(isinstance(e, str) for e in excludes):
            raise ParseError("'excludes' must be a list of strings", field="excludes")
        if not isinstance(ignored, list) or not all(isinstance(e, str) for e in ignored):
            raise ParseError("'ima.ignored_keyrings' must be a list of strings",
                             field="ignored_keyrings")
        alg = ima.get("log_hash_alg", "sha1")
        if alg not in _LOG_HASH_ALGS:
            raise ParseError(f"'ima.log_hash_alg' {alg!r} is not one of {_LOG_HASH_ALGS}",
                             field="log_hash_alg")
        if ima.get("dm_policy") is not None:
            raise ParseError("device-mapper policies (ima.dm_policy) are not supported",
                             field="dm_policy")
        release = doc.get("release", 0)
        if not isinstance(release, int) or isinstance(release, bool) or release < 0:
            raise ParseError("'release' must be a non-negative integer", field="release")
        vkeys = doc.get("verification-keys", "")
        if not isinstance(vkeys, str):
            raise ParseError("'verification-keys' must be a string", field="verification-keys")
        digests_raw = DigestTable.from_hex(doc.get("digests", {}), "digests")
        keyrings_raw = DigestTable.from_hex(doc.get("keyrings", {}), "keyrings")
        ima_buf_raw = DigestTable.from_hex(doc.get("ima-buf", {}), "ima-buf")
        return cls(
            digests=digests_raw.hex(),
            excludes=tuple(excludes),
            ignored_keyrings=frozenset(ignored),
            keyrings=keyrings_raw.hex(),
            ima_buf=ima_buf_raw.hex(),
            log_hash_alg=HashAlgorithm.from_name(alg),
            verification_keys=_keys_from_keylime(vkeys),
            release=release,
            digests_bytes=digests_raw,
            keyrings_bytes=keyrings_raw,
            ima_buf_bytes=ima_buf_raw,
        )

    def to_keylime_json(self) -> str:
        """The policy as Keylime's verifier takes it (its JSON schema, sorted lists)."""
        doc = {
            "meta": {"version": 1, "generator": KEYLIME_GENERATOR_LEGACY_ALLOWLIST},
            "release": self.release,
            "digests": {p: sorted(d) for p, d in sorted(self.digests.items())},
            "excludes": sorted(self.excludes),
            "keyrings": {p: sorted(d) for p, d in sorted(self.keyrings.items())},
            "ima": {"ignored_keyrings": sorted(self.ignored_keyrings),
                    "log_hash_alg": self.log_hash_alg.kernel_name, "dm_policy": None},
            "ima-buf": {p: sorted(d) for p, d in sorted(self.ima_buf.items())},
            "verification-keys": _keys_to_keylime(self.verification_keys),
        }
        return json.dumps(doc, indent=1)

    def is_excluded(self, path: str) -> bool:
        """Does an exclude pattern match ``path`` (``re.match``, as Keylime does)?"""
        return self._pattern is not None and self._pattern.match(path) is not None

    def is_ignored_keyring(self, name: str) -> bool:
        """Is the keyring ``name`` left unjudged (``ignored_keyrings``, or ``"*"``)?"""
        return "*" in self.ignored_keyrings or name in self.ignored_keyrings


def buffer_public_key(buf: bytes) -> Key | None:
    """The public key an ima-buf entry's buffer holds (a DER X.509 certificate, as the
    kernel measures keys added to a keyring), or None when it holds no key.

    Keylime's ``get_pubkey`` also tries PEM and bare public keys; the kernel's KEY_CHECK
    measures the key's payload, which for an asymmetric key is the certificate DER."""
    if not buf.startswith(b"\x30"):
        return None
    from cryptography import x509

    from .keys.key import Key

    try:
        cert = x509.load_der_x509_certificate(buf)
        pub = cert.public_key()
    except (ValueError, TypeError):
        return None
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return None
    try:
        return Key.from_certificate(buf)
    except ParseError:
        return Key.from_public_key(pub, description="ima-buf key")


def create_runtime_policy(
    entries: Iterable[MeasurementEntry] = (),
    *,
    file_digests: Mapping[str, Iterable[bytes]] | None = None,
    keyrings: bool = False,
    ima_buf: bool = False,
    ignored_keyrings: Iterable[str] = (),
    excludes: Iterable[str] = (),
    verification_keys: Iterable[Key] = (),
    log_hash_alg: HashAlgorithm = HashAlgorithm.SHA1,
) -> RuntimePolicy:
    """A runtime policy as ``keylime-policy create runtime`` makes it.

    From a list (``--ima-measurement-list``): the file digest of every ima-ng and
    ima-sig entry under its path (boot_aggregate included, as Keylime does); with
    ``keyrings`` (``--keyrings``) the digest of every ima-buf entry holding a key under
    its keyring unless ignored; with ``ima_buf`` (``--ima-buf``) every other ima-buf
    entry's digest under its name. Unlike Keylime, which splits ASCII lines on spaces,
    paths with spaces are taken whole. ``file_digests`` (``--rootfs``; see
    :func:`imasim.io.tree_digests`) adds path -> digests.
    """
    digests: dict[str, set[str]] = {}
    kr: dict[str, set[str]] = {}
    buf: dict[str, set[str]] = {}
    ignored = frozenset(ignored_keyrings)
    for e in entries:
        if e.is_violation:
            continue
        t = e.template_name
        if t not in ("ima-ng", "ima-sig", "ima-buf"):
            continue
        try:
            name = e.event_name
            fd = e.file_digest
            data = e.fields.get("buf") if t == "ima-buf" else None
        except ParseError:
            continue
        if fd is None:
            continue
        hexd = fd.digest.hex()
        if t != "ima-buf":
            digests.setdefault(name, set()).add(hexd)
        elif isinstance(data, bytes) and buffer_public_key(data) is not None:
            if keyrings and name not in ignored:
                kr.setdefault(name, set()).add(hexd)
        elif ima_buf:
            buf.setdefault(name, set()).add(hexd)
    for path, ds in (file_digests or {}).items():
        digests.setdefault(path, set()).update(d.hex() for d in ds)
    return RuntimePolicy(
        digests={p: frozenset(d) for p, d in digests.items()},
        excludes=tuple(sorted(set(excludes))),
        ignored_keyrings=ignored,
        keyrings={p: frozenset(d) for p, d in kr.items()},
        ima_buf={p: frozenset(d) for p, d in buf.items()},
        log_hash_alg=log_hash_alg,
        verification_keys=tuple(verification_keys),
    )
