"""security/integrity/ima/ima_kexec.c and ima_template.c: the list carried across kexec.

The buffer is ``struct ima_kexec_hdr`` (u16 version = 1, u16 + u32 reserved, u64
buffer_size including the header, u64 count) followed by ``count`` records exactly as
``binary_runtime_measurements`` holds them, with 20-byte SHA-1 template digests.

:func:`restore_kexec_buffer` makes every check of ``ima_restore_measurement_list``.
Like the kernel it keeps the entries restored before the first legacy ``ima`` record
(the kernel refuses that template and stops there) and before a record whose template
format it cannot build (it stops silently); a *malformed* buffer restores nothing (the
kernel would keep a prefix and log -EINVAL; a verifier wants the error, so imasim raises
it and returns nothing, and :class:`RestoreResult` says where and why it stopped).

>>> from imasim.ima import MeasurementEntry, DigestWithAlgo
>>> e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/init"])
>>> buf = pack_kexec_buffer([e])
>>> buf[:2], len(buf) == int.from_bytes(buf[8:16], "little")
(b'\\x01\\x00', True)
>>> list(restore_kexec_buffer(buf).entries) == [e]
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .algorithms import HashAlgorithm
from .errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    TruncatedError,
    UsageError,
)
from .ima.codec import MeasurementList
from .ima.entry import MeasurementEntry, split_template_data
from .ima.fields import ByteOrder
from .ima.templates import lookup_template
from .keys.keyring import Blacklist, Keyring
from .sig.authenticode import verify_authenticode
from .sig.modsig import split_modsig
from .sig.pkcs7 import Usage, verify_pkcs7

__all__ = [
    "IMA_KEXEC_HDR_SIZE",
    "MAX_TEMPLATE_NAME_LEN",
    "RestoreResult",
    "kexec_signature_refusal",
    "pack_kexec_buffer",
    "restore_kexec_buffer",
    "verify_kexec_image",
]

IMA_KEXEC_HDR_SIZE: Final = 24
IMA_KEXEC_VERSION: Final = 1
#: sizeof("d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode")
MAX_TEMPLATE_NAME_LEN: Final = 69
_HDR = {"little": struct.Struct("<HHIQQ"), "big": struct.Struct(">HHIQQ")}
_U32 = {"little": struct.Struct("<I"), "big": struct.Struct(">I")}


def pack_kexec_buffer(entries: Iterable[MeasurementEntry], *,
                      byte_order: ByteOrder = "little") -> bytes:
    """ima_dump_measurement_list: the header and every record (SHA-1 template digests)."""
    records: list[bytes] = []
    for e in entries:
        if len(e.template_digest) != 20:
            e = e.with_digest_for(HashAlgorithm.SHA1)
        records.append(e.to_bytes(byte_order=byte_order))
    body = b"".join(records)
    hdr = _HDR[byte_order].pack(IMA_KEXEC_VERSION, 0, 0, IMA_KEXEC_HDR_SIZE + len(body),
                                len(records))
    return hdr + body


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What the new kernel restored, and why it stopped early (``stopped`` or None)."""

    entries: MeasurementList
    stopped: str | None = None
    stopped_at: int | None = None


def restore_kexec_buffer(data: bytes | bytearray | memoryview, *,
                         byte_order: ByteOrder = "little") -> RestoreResult:
    """ima_restore_measurement_list. Raises ParseError on any malformed record.

    Restored entries get their SHA-1 template digest recomputed from the template data,
    as the kernel does (the carried digest is never compared); an all-zero carried digest
    makes the entry a violation.
    """
    buf = bytes(data)
    if len(buf) < IMA_KEXEC_HDR_SIZE:
        return RestoreResult(MeasurementList(), "buffer smaller than the header", 0)
    version, _r0, _r1, size, count = _HDR[byte_order].unpack_from(buf, 0)
    if version != IMA_KEXEC_VERSION:
        raise ParseError("incompatible measurement list version", offset=0, field="version",
                         expected=IMA_KEXEC_VERSION, actual=version)
    if count > (1 << 64) - 2:
        raise ParseError("count too large", offset=16, field="count", actual=count)
    if size > len(buf):
        raise TruncatedError("buffer_size exceeds the buffer", offset=8, field="buffer_size",
                             expected=f"<= {len(buf)}", actual=size)
    if size < IMA_KEXEC_HDR_SIZE:
        raise ParseError("buffer_size smaller than the header", offset=8,
                         field="buffer_size", actual=size)
    unpack = _U32[byte_order].unpack_from
    pos, end, n = IMA_KEXEC_HDR_SIZE, size, 0
    out: list[MeasurementEntry] = []
    stopped: str | None = None
    while pos < end and n < count:
        if end - pos < 28:
            raise TruncatedError(f"record {n} header truncated", offset=pos, field="entry")
        (pcr,) = unpack(buf, pos)
        digest = buf[pos + 4:pos + 24]
        (nlen,) = unpack(buf, pos + 24)
        pos += 28
        if nlen > end - pos:
            raise TruncatedError(f"record {n} template name length {nlen} exceeds the buffer",
                                 offset=pos - 4, field="template_name_len")
        if nlen >= MAX_TEMPLATE_NAME_LEN:
            raise ParseError(f"record {n} template name too long", offset=pos - 4,
                             field="template_name_len", expected="< 69", actual=nlen)
        raw_name = buf[pos:pos + nlen]
        pos += nlen
        name = raw_name.decode("ascii", "replace")
        if name == "ima":
            # the legacy layout has no data length: the kernel's ima_parse_buf fails on
            # the header ("nr of fields mismatch: expected: 4, current: 3", -EINVAL) and
            # the entries restored before it stay.
            stopped = "unsupported template 'ima' (nr of fields mismatch)"
            break
        if end - pos < 4:
            raise TruncatedError(f"record {n} template data length missing", offset=pos,
                                 field="template_data_len")
        (dlen,) = unpack(buf, pos)
        pos += 4
        if dlen > end - pos:
            raise TruncatedError(f"record {n} template data length {dlen} exceeds the buffer",
                                 offset=pos - 4, field="template_data_len")
        data_bytes = buf[pos:pos + dlen]
        pos += dlen
        if n + 1 == count and pos != end:
            raise ParseError("the last record does not end at buffer_size", offset=pos,
                             field="buffer_size")
        try:
            desc = lookup_template(name)
        except ParseError:
            stopped = f"unknown template format {name!r}"  # restore_template_fmt fails
            break
        split_template_data(data_bytes, len(desc.fields), byte_order, base=pos - dlen)
        entry = MeasurementEntry(pcr, name, b"", data_bytes, byte_order)
        stored = HashAlgorithm.SHA1.zero if not digest.strip(b"\0") else \
            entry.template_hash(HashAlgorithm.SHA1)
        out.append(entry._replace(template_digest=stored))
        n += 1
    return RestoreResult(MeasurementList(out, byte_order=byte_order), stopped,
                         n if stopped else None)


# -- kexec_file_load image verification ----------------------------------------------------
def verify_kexec_image(image: bytes, *, arch: str, keyrings: Sequence[Keyring],
                       blacklist: Blacklist | None = None) -> str:
    """The arch loader's verify_sig for kexec_file_load: the name of the keyring whose
    key accepted ``image``, or the kernel's error raised. ``keyrings`` are tried in
    order while the answer is -ENOKEY (the secondary keyring, then the platform one).

    x86_64 and arm64 check a PE image's Authenticode signature
    (kexec_kernel_verify_pe_sig -> verify_pefile_signature); s390x checks an appended
    module-style signature (s390_verify_sig: a missing or non-PKCS#7 trailer is
    -EKEYREJECTED). ppc64le has no KEXEC_SIG in mainline (its kernel images are appraised
    by IMA's arch policy); with ``kexec_sig`` on, a ppc64le kernel is the 2021 patch set
    "KEXEC_SIG with appended signature" (not merged as of 6.12), which checks an
    appended signature as s390 does. Any other architecture is refused (UsageError).
    The image-hash (``bin:``) blacklist is not consulted here."""
    if not keyrings:
        raise UsageError("no keyring to verify the kexec image against")
    if arch in ("x86_64", "arm64"):
        return verify_authenticode(image, keyrings=keyrings, blacklist=blacklist).keyring
    if arch not in ("s390x", "ppc64le"):
        raise UsageError(f"kexec image verification for {arch!r} is not modelled")
    split = split_modsig(image)
    if split is None:
        raise KeyRejectedError("kernel image has no appended signature")
    for ring in keyrings:
        try:
            verify_pkcs7(split[1].signed_data, split[0], keyring=ring,
                         usage=Usage.MODULE_SIGNATURE, blacklist=blacklist)
            return ring.name
        except KeyNotFoundError:
            if ring is keyrings[-1]:
                raise
    raise AssertionError("unreachable")


def kexec_signature_refusal(image: bytes, *, arch: str, keyrings: Sequence[Keyring],
                            blacklist: Blacklist | None, sig_enforced: bool,
                            lockdown: str, ima_appraises_signature: bool) -> str | None:
    """kimage_validate_signature: None to go on with the load, else why it is refused.

    A failed check refuses the load when signatures are enforced (``sig_enforced``);
    otherwise only lockdown refuses it (-EPERM), unless the IMA policy guarantees a
    signature appraisal of the image (``ima_appraises_signature``:
    ima_appraise_signature under ima_appraise=enforce)."""
    try:
        verify_kexec_image(image, arch=arch, keyrings=keyrings, blacklist=blacklist)
        return None
    except ImasimError as exc:
        error = f"KEXEC_SIG: {exc}"
    if sig_enforced:
        return error
    if lockdown != "none" and not ima_appraises_signature:
        return f"{error}; lockdown ({lockdown}) refuses unverified kexec images"
    return None
