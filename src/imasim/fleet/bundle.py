"""The evidence bundle: everything a verifier needs from one machine, as files.

A bundle is a folder (or a tar of the same files) holding what an attestation agent sends
and what the verifier asked with, each file in the form the real tools read it:

=============================== ============================================================
``bundle.json``                 header: format, machine id, list digest algorithm, files
``quote.msg``                   TPMS_ATTEST (``tpm2_quote -m``)
``quote.sig``                   TPMT_SIGNATURE (``tpm2_quote -s``; ``-f plain`` not used)
``quote.pcrs``                  PCR file, tpm2-tools serialized form (``tpm2_quote -o``)
``ak.pub``                      the AK public key, PEM (``tpm2_createak -f pem``)
``nonce.bin``                   the verifier's challenge, raw bytes (``tpm2_checkquote -q``)
``binary_runtime_measurements`` the IMA list as securityfs gives it
``binary_bios_measurements``    optional: the firmware's TCG event log
=============================== ============================================================

so ``tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -f quote.pcrs -q nonce.bin``
runs in a bundle's folder as it is. Nothing in a bundle is trusted: the verifier checks it
all (and should pass its own record of the nonce it sent, not the bundle's).

This module is sans-I/O (bytes in, bytes out); :mod:`imasim.fleet.io` reads and writes
folders and tar files.

>>> b = EvidenceBundle(machine="m1", quote_message=b"m", quote_signature=b"s",
...                    pcr_file=b"p", ak_public=b"k", nonce=b"\\x01",
...                    measurement_list=b"")
>>> sorted(b.to_files())[:3]
['ak.pub', 'binary_runtime_measurements', 'bundle.json']
>>> EvidenceBundle.from_files(b.to_files()) == b
True
>>> EvidenceBundle.from_tar(b.to_tar()) == b
True
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..algorithms import HashAlgorithm
from ..errors import LimitExceededError, ParseError, UnsupportedAlgorithmError, UsageError
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["BUNDLE_FORMAT", "FILES", "EvidenceBundle", "check_machine_id"]

#: The ``format`` value of ``bundle.json``.
BUNDLE_FORMAT: Final = "imasim-evidence-bundle/1"

#: Attribute -> file name of every file a bundle holds (``event_log`` is optional).
FILES: Final[Mapping[str, str]] = {
    "quote_message": "quote.msg",
    "quote_signature": "quote.sig",
    "pcr_file": "quote.pcrs",
    "ak_public": "ak.pub",
    "nonce": "nonce.bin",
    "measurement_list": "binary_runtime_measurements",
    "event_log": "binary_bios_measurements",
}
_HEADER: Final = "bundle.json"
_OPTIONAL: Final = frozenset({"event_log"})
_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_MAX_HEADER: Final = 64 * 1024


def check_machine_id(machine: str) -> str:
    """A machine id is a safe file name: 1-128 of ``[A-Za-z0-9._-]``, not starting with a
    dot or a dash (it names the bundle's folder). Returns it; raises ParseError.

    >>> check_machine_id("web-0001")
    'web-0001'
    >>> check_machine_id("../etc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    imasim.errors.ParseError: field machine: machine id '../etc' is not ...
    """
    if not isinstance(machine, str) or _ID.fullmatch(machine) is None:
        raise ParseError(f"machine id {machine!r} is not 1-128 characters of [A-Za-z0-9._-]",
                         field="machine")
    return machine


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceBundle:
    """One machine's evidence, exactly as its files hold it (nothing here is verified)."""

    machine: str
    quote_message: bytes
    quote_signature: bytes
    pcr_file: bytes
    ak_public: bytes
    nonce: bytes
    measurement_list: bytes
    event_log: bytes | None = None
    list_digest_alg: HashAlgorithm = HashAlgorithm.SHA1
    """The template digest algorithm of the list (SHA-1 for ``binary_runtime_measurements``;
    a 6.10+ per-bank list ``binary_runtime_measurements_<alg>`` stores that bank's)."""

    def __post_init__(self) -> None:
        check_machine_id(self.machine)
        for attr in FILES:
            v = getattr(self, attr)
            if not (isinstance(v, bytes) or (v is None and attr in _OPTIONAL)):
                raise UsageError(f"EvidenceBundle.{attr} must be bytes, not {type(v).__name__}")

    def header(self) -> dict[str, Any]:
        """The ``bundle.json`` document."""
        return {
            "format": BUNDLE_FORMAT,
            "machine": self.machine,
            "list_digest_alg": self.list_digest_alg.kernel_name,
            "files": {a: n for a, n in FILES.items()
                      if a not in _OPTIONAL or getattr(self, a) is not None},
        }

    def to_files(self) -> dict[str, bytes]:
        """File name -> content, ``bundle.json`` included."""
        out = {_HEADER: (json.dumps(self.header(), indent=1, sort_keys=True) + "\n").encode()}
        for attr, name in FILES.items():
            v = getattr(self, attr)
            if v is not None:
                out[name] = v
        return out

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> EvidenceBundle:
        """The inverse of :meth:`to_files`; files the header does not name are ignored."""
        head = files.get(_HEADER)
        if head is None:
            raise ParseError(f"no {_HEADER}", field=_HEADER)
        doc = _parse_header(head)
        kwargs: dict[str, Any] = {}
        listed = doc["files"]
        for attr, name in FILES.items():
            if attr in listed:
                if listed[attr] != name:
                    raise ParseError(f"{_HEADER} names {listed[attr]!r} for {attr}, not {name!r}",
                                     field=f"files.{attr}")
                if name not in files:
                    raise ParseError(f"the bundle lacks {name}", field=attr)
                kwargs[attr] = bytes(files[name])
            elif attr not in _OPTIONAL:
                raise ParseError(f"{_HEADER} does not list {attr}", field=f"files.{attr}")
        return cls(machine=doc["machine"], list_digest_alg=doc["list_digest_alg"], **kwargs)

    def to_tar(self) -> bytes:
        """A ustar archive of :meth:`to_files` under ``<machine>/`` (deterministic: sorted
        names, mtime 0, root-owned, mode 0644)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in sorted(self.to_files().items()):
                info = tarfile.TarInfo(f"{self.machine}/{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    @classmethod
    def from_tar(cls, data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> EvidenceBundle:
        """Read :meth:`to_tar`'s archive (regular files in one top folder, or at the top;
        no more than ``limits.max_archive_size`` bytes in all)."""
        files: dict[str, bytes] = {}
        total = 0
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                for n, info in enumerate(tar):
                    if n >= 64:
                        raise LimitExceededError("more than 64 members in a bundle",
                                                 field="tar", actual=n)
                    if not info.isfile():
                        continue
                    name = info.name.rsplit("/", 1)[-1]
                    total += info.size
                    if total > limits.max_archive_size:
                        raise LimitExceededError("bundle larger than max_archive_size",
                                                 field="tar", actual=total)
                    f = tar.extractfile(info)
                    if f is None or name in files:
                        raise ParseError(f"bad or duplicate member {info.name!r}", field="tar")
                    files[name] = f.read()
        except tarfile.TarError as exc:
            raise ParseError(f"not a tar archive: {exc}", field="tar") from None
        return cls.from_files(files)


def _parse_header(head: bytes) -> dict[str, Any]:
    if len(head) > _MAX_HEADER:
        raise LimitExceededError(f"{_HEADER} above {_MAX_HEADER} bytes", field=_HEADER,
                                 actual=len(head))
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"{_HEADER} is not JSON: {exc}", field=_HEADER) from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise ParseError(f"{_HEADER} is not an imasim evidence bundle header", field="format",
                         expected=BUNDLE_FORMAT,
                         actual=doc.get("format") if isinstance(doc, dict) else None)
    machine, files = doc.get("machine"), doc.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ParseError(f"{_HEADER}: files must map names to file names", field="files")
    try:
        alg = HashAlgorithm.from_name(str(doc.get("list_digest_alg", "sha1")))
    except UnsupportedAlgorithmError as exc:
        raise ParseError(str(exc), field="list_digest_alg") from None
    return {"machine": check_machine_id(machine) if isinstance(machine, str) else
            check_machine_id(repr(machine)), "files": files, "list_digest_alg": alg}
