"""Reading the command line's input files: a path or ``-``, and what kind of file it is.

Every file a subcommand reads goes through :func:`read_input`. It reads a path, or
standard input for ``-``; refuses a missing, empty or directory path with one line; and
*sniffs* the bytes: when they are recognisably another kind of file than the command
expects (a PEM certificate where a binary measurement list belongs, JSON where a TPM quote
belongs), the error says so, instead of a parser reporting the nonsense it found
("template name length 170732845").

Sniffing only ever turns a wrong file into a clearer refusal: a kind is rejected up front
only when it is recognised with certainty (magic bytes, or a structure that parses) and
the command does not accept it. Anything not recognised goes to the command's parser.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParseError, PolicyError, UsageError

#: what certificates, keys and signatures may come as
CERTIFICATE = frozenset({"pem:certificate", "pem:x509 certificate", "der-cert", "der"})
PRIVATE_KEY = frozenset({"pem:private key", "pem:rsa private key", "pem:ec private key",
                         "der-key", "der"})

__all__ = ["CERTIFICATE", "PRIVATE_KEY", "Kind", "describe", "display_name", "load_json",
           "read_input", "read_list", "read_whole", "sniff", "stdout_broken", "write_output"]

#: PCR numbers a measurement list can name (a TPM has 24; the kernel allows 0..23).
_MAX_PCR = 24
#: Digest sizes of the template digests a binary list can carry (sha1, 256, 384, 512).
_DIGEST_SIZES = (20, 32, 48, 64)
_ASCII_LINE = re.compile(rb"\s*\d{1,2} [0-9a-f]{40,128} [!-~]{1,255} ")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 #]{1,64})-----")
_TOML_LINE = re.compile(rb"\s*(\[\[?[\w.\" -]+\]\]?|[\w.\"-]+\s*=)")


@dataclass(frozen=True)
class Kind:
    """What a file looks like: a short ``name`` commands list in what they accept, a
    ``description`` for messages ("a PEM file (CERTIFICATE)"), and whether it was
    recognised with certainty (``certain``: magic bytes or a structure that parses)."""

    name: str
    description: str
    certain: bool = True
    #: for binary measurement lists: the order of their integers, the template digest size
    byte_order: str = "little"
    digest_size: int = 20


def _binary_list(data: bytes) -> Kind | None:
    """A binary measurement list: ``pcr``, digest, name length, printable name, in
    either byte order and any of the digest sizes of the per-bank lists."""
    if len(data) < 4 + 20 + 4 + 3:
        return None
    for order, fmt in (("little", "<I"), ("big", ">I")):
        (pcr,) = struct.unpack_from(fmt, data, 0)
        if pcr >= _MAX_PCR:
            continue
        for dsize in _DIGEST_SIZES:
            if len(data) < 8 + dsize:
                break
            (nlen,) = struct.unpack_from(fmt, data, 4 + dsize)
            name = data[8 + dsize:8 + dsize + nlen]
            if not 1 <= nlen <= 255 or len(name) != nlen:
                continue
            if not re.fullmatch(rb"[!-~]+", name):
                continue
            what = "a binary measurement list"
            if dsize != 20:
                what = f"a per-bank binary measurement list ({dsize}-byte template digests)"
            if order == "big":
                what += ", big endian"
            kind = "binary-list" if dsize == 20 else "per-bank-list"
            return Kind(kind, what, byte_order=order, digest_size=dsize)
    return None


_JSON_FORMAT = re.compile(rb'"format"\s*:\s*"([^"]{1,64})"')
_JSON_POLICY = re.compile(rb'"(digests|meta|excludes|keyrings)"\s*:')
_JSON_PCRS = re.compile(rb'\s*\{\s*"(sha1|sha256|sha384|sha512|sm3_256)"\s*:\s*\{')
_JSON_OLD_LIST = re.compile(rb'\s*\[\s*\{[^\]]*"template_name"\s*:')


def _json(data: bytes) -> Kind | None:
    """JSON, told apart by what its first 4 KiB say (a big policy is not parsed twice:
    whether the document is valid is for the command's parser to say)."""
    head = data[:4096]
    start = head.lstrip()[:1]
    if start not in (b"{", b"["):
        return None
    m = _JSON_FORMAT.search(head)
    fmt = m.group(1) if m else b""
    if fmt.startswith(b"imasim-measurement-list"):
        return Kind("json-list", "a JSON measurement list")
    if fmt.startswith(b"imasim-tpm-state"):
        return Kind("json-tpm-state", "a TPM state file (JSON)")
    if start == b"{" and _JSON_PCRS.match(head):
        return Kind("json-pcrs", "a PCR values file (JSON)")
    if start == b"{" and _JSON_POLICY.search(head):
        return Kind("json-policy", "a runtime policy (JSON)")
    if _JSON_OLD_LIST.match(head):
        return Kind("json-list", "a JSON measurement list (without template data)")
    return Kind("json", "a JSON file")


def _der(data: bytes) -> Kind | None:
    """A DER SEQUENCE whose length covers the whole file; a certificate or PKCS#7 named."""
    if len(data) < 4 or data[0] != 0x30:
        return None
    n = data[1]
    if n < 0x80:
        size, hdr = n, 2
    elif 0x81 <= n <= 0x84 and len(data) >= 2 + (n & 0x7F):
        size, hdr = int.from_bytes(data[2:2 + (n & 0x7F)], "big"), 2 + (n & 0x7F)
    else:
        return None
    if hdr + size != len(data):
        return None
    if b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" in data[:32]:
        return Kind("der-pkcs7", "a DER PKCS#7 message")
    if data[hdr] == 0x30 and data[hdr + 1:hdr + 2] in (b"\x82", b"\x81") and len(data) > 64:
        # tbsCertificate SEQUENCE with an explicit [0] version, as every v3 certificate has
        at = hdr + 2 + (data[hdr + 1] & 0x7F)
        if data[at:at + 2] == b"\xa0\x03":
            return Kind("der-cert", "a DER certificate")
    if data[hdr] == 0x02 and data[hdr + 1:hdr + 3] == b"\x01\x00":  # INTEGER 0: a key
        return Kind("der-key", "a DER private key")
    if data[hdr] == 0x30 and (b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01" in data[:32]
                              or b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" in data[:32]):
        return Kind("der-public-key", "a DER public key")
    return Kind("der", "a DER (ASN.1) file")


_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "a gzip file"),
    (b"\xfd7zXZ\x00", "xz", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "zstd", "a zstd file"),
    (b"BZh", "bzip2", "a bzip2 file"),
    (b"\x02\x21\x4c\x18", "lz4", "an lz4 file"),
    (b"070701", "cpio", "a cpio archive"),
    (b"070702", "cpio", "a cpio archive"),
    (b"070707", "cpio", "a cpio archive"),
    (b"\x7fELF", "elf", "an ELF file"),
    (b"MZ", "pe", "a PE/COFF image"),
    (b"\xffTCG", "tpm-attest", "a TPM quote message (TPMS_ATTEST)"),
)


def sniff(data: bytes) -> Kind:
    """What ``data`` looks like; ``Kind("data", ...)`` (not certain) when nothing matched.

    >>> sniff(b"-----BEGIN CERTIFICATE-----\\nMII...").description
    'a PEM file (CERTIFICATE)'
    >>> sniff(b'{"sha256": {"10": "00"}}').name
    'json-pcrs'
    """
    if not data:
        return Kind("empty", "empty")
    for magic, name, what in _MAGIC:
        if data.startswith(magic):
            return Kind(name, what)
    if len(data) > 262 and data[257:262] == b"ustar":
        return Kind("tar", "a tar archive")
    if len(data) >= 24 and data[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x00" \
            and int.from_bytes(data[8:16], "little") == len(data):
        return Kind("kexec-buffer", "an IMA kexec buffer")
    if data[4:8] == b"\x03\x00\x00\x00" and data[32:45] == b"Spec ID Event":
        return Kind("eventlog", "a TCG event log (binary_bios_measurements)")
    stripped = data.lstrip()
    m = _PEM.match(stripped[:80])
    if m:
        label = m.group(1).decode()
        return Kind("pem:" + label.lower(), f"a PEM file ({label})")
    if _ASCII_LINE.match(data[:300]):
        return Kind("ascii-list", "an ASCII measurement list")
    j = _json(data)
    if j is not None:
        return j
    b = _binary_list(data)
    if b is not None:
        return b
    d = _der(data)
    if d is not None:
        return d
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4090 or len(data) <= 4096:
            return Kind("data", "binary data", certain=False)
        text = data[:exc.start].decode("utf-8")
    if text.startswith("policy_name="):
        return Kind("ipe-policy", "an IPE policy")
    if _TOML_LINE.match(data[:200]):
        return Kind("toml", "a TOML-like text file", certain=False)
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return Kind("text", "a text file", certain=False)
    return Kind("data", "binary data", certain=False)


def display_name(path: Path | str) -> str:
    """How messages name an input: the path as given, ``stdin`` for ``-``."""
    return "stdin" if str(path) == "-" else str(path)


def describe(path: Path | str, data: bytes) -> str:
    """``x.pem is a PEM file (CERTIFICATE)``."""
    return f"{display_name(path)} is {sniff(data).description}"


def read_input(path: Path | str, expect: str, accept: Collection[str] | None = None, *,
               allow_empty: bool = False) -> bytes:
    """The bytes of ``path`` (standard input for ``-``), checked to be what a command reads.

    ``expect`` names the kind for messages ("a binary measurement list"); ``accept`` is
    the set of :class:`Kind` names the command reads (None: any bytes). A missing or
    unreadable path, a directory, an empty file (unless ``allow_empty``) and a file
    recognised as another kind raise :class:`ParseError` or :class:`UsageError`, whose
    one-line message names the file and what it is.
    """
    name = display_name(path)
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{name}: no such file, expected {expect}") from None
        except IsADirectoryError:
            raise UsageError(f"{name} is a directory, expected {expect}") from None
        except PermissionError:
            raise UsageError(f"{name}: permission denied") from None
        except OSError as exc:
            raise UsageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not data:
        if allow_empty:
            return data
        raise ParseError(f"{name} is empty, expected {expect}")
    if accept is not None:
        kind = sniff(data)
        if kind.certain and kind.name not in accept:
            raise ParseError(f"{name} is {kind.description}, expected {expect}")
    return data


def peek_input(path: Path | str, expect: str, accept: Collection[str] | None = None, *,
               size: int = 1 << 16) -> bytes:
    """The first ``size`` bytes of a file a command will stream, with the checks of
    :func:`read_input` (missing, directory, empty, recognisably another kind of file)."""
    name = display_name(path)
    try:
        with Path(path).open("rb") as f:
            head = f.read(size)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file, expected {expect}") from None
    except IsADirectoryError:
        raise UsageError(f"{name} is a directory, expected {expect}") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ParseError(f"{name} is empty, expected {expect}")
    if accept is not None:  # a cut JSON document or DER element is not recognised: no harm
        kind = sniff(head)
        if kind.certain and kind.name not in accept:
            raise ParseError(f"{name} is {kind.description}, expected {expect}")
    return head


@contextmanager
def explained(path: Path | str, data: bytes, expect: str,
              accept: Collection[str] = ()) -> Iterator[None]:
    """Re-raise a :class:`ParseError` (or :class:`PolicyError`) from parsing ``data`` with
    the file named and, when the file is recognisably something else than ``expect``
    (another kind; or text, when ``accept`` names the kinds expected), what it is."""
    try:
        yield
    except (ParseError, PolicyError) as exc:
        kind = sniff(data)
        other = kind.name not in accept and (kind.certain or (bool(accept) and kind.name in (
            "text", "toml")))
        if other:
            raise ParseError(f"{display_name(path)} is {kind.description}, expected "
                             f"{expect} ({exc})") from None
        raise ParseError(f"{display_name(path)}: {exc}") from None


def load_json(path: Path | str, expect: str, accept: Collection[str] | None = ("json",)
              ) -> Any:
    """A JSON document from ``path`` or ``-``, through the bounded loader: bad JSON (deep
    nesting, 5,000-digit numbers included) is a :class:`ParseError` naming the file."""
    from ..io import load_json_bounded

    return load_json_bounded(read_input(path, expect, accept), what=display_name(path))


def write_output(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path``, or to standard output for ``-``."""
    if str(path) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(path).write_bytes(data)
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: no such directory to write into") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- standard output that a closed pipe cannot break ------------------------------------
class _PipeSafeRaw(io.RawIOBase):
    """fd 1 for a TextIOWrapper: once the reader has gone (EPIPE), writes are dropped and
    fd 1 points at /dev/null, so the command finishes and exits with its own code."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, b: Any) -> int:
        n = len(memoryview(b))
        if self.broken:
            return n
        view = memoryview(b)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            self.broken = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.fd)
            os.close(devnull)
        return n


_current: _PipeSafeRaw | None = None


def stdout_broken() -> bool:
    """True once the reader of standard output has gone (``| head``): long outputs stop."""
    return _current is not None and _current.broken


@contextmanager
def pipe_safe_stdout() -> Iterator[None]:
    """For the duration, ``sys.stdout`` is a pipe-safe writer on fd 1 (only when stdout is
    the process's real standard output: in-process callers keep theirs)."""
    global _current
    real: Any = sys.stdout
    try:
        fd = int(real.fileno()) if id(real) == id(sys.__stdout__) else -1
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd < 0:
        yield
        return
    real.flush()
    raw = _PipeSafeRaw(fd)
    tty = os.isatty(fd)
    buffered = io.BufferedWriter(raw)
    text = io.TextIOWrapper(buffered, encoding=real.encoding, errors=real.errors,
                            line_buffering=tty)
    _current, sys.stdout = raw, text
    try:
        yield
    finally:
        try:
            text.flush()
        finally:
            sys.stdout, _current = real, None


# -- the files of a quote (tpm2_quote -m/-s/-o, tpm2_createak -u): (expect, accept) -------
QUOTE_MESSAGE = ("a quote message (TPMS_ATTEST, tpm2_quote -m)", ("tpm-attest",))
QUOTE_SIGNATURE = ("a quote signature (TPMT_SIGNATURE or plain, tpm2_quote -s)", ("der",))
AK_PUBLIC = ("an AK public key (PEM, DER or TPM2B_PUBLIC)",
             ("pem:public key", "pem:rsa public key", "der-public-key", "der"))
PCR_FILE = ("a PCR file (tpm2_quote -o)", ("data", "text"))


# -- PCR values ---------------------------------------------------------------------------
PCRS_JSON = 'PCR values as JSON ({"sha256": {"10": "<hex>"}})'


def read_pcrs(path: Path | str) -> Any:
    """PCR values (``{"sha256": {"10": "<hex>"}}``, what ``log replay --json`` and ``tpm read
    --json`` print) from ``path`` or ``-``, as :func:`imasim.io.load_pcrs_json` returns them."""
    from ..io import load_pcrs_json

    data = read_input(path, PCRS_JSON, ("json-pcrs",))
    with explained(path, data, PCRS_JSON):
        try:
            return load_pcrs_json(data)
        except RecursionError:
            raise ParseError("nested too deeply") from None


# -- measurement lists ---------------------------------------------------------------------
LIST_KINDS = frozenset({"binary-list", "per-bank-list", "ascii-list", "json-list"})


def read_whole(path: Path | str, expect: str = "a measurement list (binary, ASCII or "
               "JSON)") -> bool:
    """Must the list at ``path`` be read whole (stdin, ASCII, JSON), or can a binary list
    stream from the file? Refuses missing, empty and wrong files as :func:`read_input`."""
    if str(path) == "-":
        return True
    head = peek_input(path, expect, LIST_KINDS)
    return sniff(head).name == "ascii-list" or head.lstrip()[:1] == b"{"


def read_list(path: Path | str, *, byte_order: str | None = None,
              digest_alg: Any = None, expect: str = "a measurement list (binary, ASCII "
              "or JSON)", accept: Collection[str] = LIST_KINDS) -> Any:
    """A measurement list from ``path`` or ``-``: binary (either byte order and the template
    digest algorithm found from the records, a ``_<alg>`` file name only breaking a tie:
    :func:`imasim.ima.codec.detect_list_kind`), ASCII or the JSON of ``imasim log show
    --json``, told apart by their content."""
    from ..ima.codec import detect_list_kind, parse_ascii_measurement_list, parse_measurement_list
    from ..ima.jsonfmt import parse_json_measurement_list
    from ..io import list_name_hint

    data = read_input(path, expect, accept)
    kind = sniff(data)
    with explained(path, data, expect, accept):
        if kind.name == "json-list":
            return parse_json_measurement_list(data)
        order = byte_order or kind.byte_order
        if kind.name == "ascii-list":
            return parse_ascii_measurement_list(data.decode("utf-8", "surrogateescape"),
                                                byte_order=order, digest_alg=digest_alg)
        # the kind from the records (the file name only breaks a tie, e.g. a list of
        # violations alone: sha256 or sm3)
        found = detect_list_kind(data, digest_alg=digest_alg, byte_order=byte_order,
                                 hint=list_name_hint(display_name(path)))
        return parse_measurement_list(data, byte_order=found.byte_order,
                                      digest_alg=found.digest_alg)
