"""security/integrity/ima/ima_api.c, ima_main.c, ima_init.c: the entries the kernel records.

Convenience constructors over :meth:`MeasurementEntry.create` for the usual events, each
filling the fields the way the kernel's field init functions (ima_template_lib.c) do:

- :func:`ima_ng_entry` / :func:`file_entry`: ima_store_measurement of a file;
- :func:`ima_buf_entry`: process_buffer_measurement (keys, critical data, kexec cmdline);
- :func:`violation_entry`: ima_add_violation (zero digests, zero template digest);
- :func:`boot_aggregate_entry`: ima_add_boot_aggregate.

>>> from imasim.algorithms import HashAlgorithm
>>> e = ima_ng_entry("/usr/bin/true", HashAlgorithm.SHA256.hash(b""), HashAlgorithm.SHA256)
>>> e.ascii_line()[44:]
'ima-ng sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 /usr/bin/true\\n'
>>> v = violation_entry("ima-ng", "/tmp/x")
>>> v.is_violation, v.template_digest == bytes(20), str(v.fields["d-ng"])[:16]
(True, True, 'sha256:000000000')
"""

from __future__ import annotations

from typing import Final

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from .entry import IMA_EVENT_NAME_LEN_MAX, MeasurementEntry
from .fields import ByteOrder, DigestWithAlgo, FieldValue
from .templates import TemplateDescriptor, lookup_template

__all__ = [
    "BOOT_AGGREGATE_NAME",
    "boot_aggregate_entry",
    "file_entry",
    "ima_buf_entry",
    "ima_ng_entry",
    "violation_entry",
]

#: ima_init.c: ``boot_aggregate_name``.
BOOT_AGGREGATE_NAME: Final = "boot_aggregate"
_IMA_DIGEST_SIZE: Final = 20  # ima.h IMA_DIGEST_SIZE (SHA-1), the 'd' field's size


def _desc(template: str | TemplateDescriptor) -> TemplateDescriptor:
    return template if isinstance(template, TemplateDescriptor) else lookup_template(template)


def _legacy_name(path: str) -> str:
    """ima_eventname_init: a name over 255 characters becomes its last component."""
    if len(path.encode("utf-8", "surrogateescape")) <= IMA_EVENT_NAME_LEN_MAX:
        return path
    return path.rsplit("/", 1)[-1][:IMA_EVENT_NAME_LEN_MAX]


def _entry(desc: TemplateDescriptor, values: dict[str, FieldValue], pcr: int,
           byte_order: ByteOrder, violation: bool = False) -> MeasurementEntry:
    return MeasurementEntry.create(desc, {k: values.get(k) for k in desc.field_ids}, pcr=pcr,
                                   byte_order=byte_order, violation=violation)


def file_entry(
    template: str | TemplateDescriptor,
    path: str,
    file_digest: bytes,
    alg: HashAlgorithm,
    *,
    sha1_digest: bytes | None = None,
    sig: bytes | None = None,
    modsig: tuple[bytes, bytes] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    mode: int | None = None,
    evm: tuple[bytes | None, str, tuple[int, ...], bytes] | None = None,
    pcr: int = 10,
    byte_order: ByteOrder = "little",
) -> MeasurementEntry:
    """ima_store_measurement: a file measured with ``alg`` into any template.

    ``sha1_digest`` is the 'd' field of the legacy ``ima`` template (the kernel
    recomputes SHA-1 when ima_hash is another algorithm; required then). ``sig`` is the
    security.ima value (the kernel records only signature types 3 and 6, else nothing).
    ``modsig`` is ``(payload_digest, pkcs7_der)``; ``evm`` is ``(evmsig, xattrnames,
    xattrlengths, xattrvalues)``. Inode fields are left empty when not given.
    """
    desc = _desc(template)
    if len(file_digest) != alg.digest_size:
        raise UsageError(f"a {alg.kernel_name} digest has {alg.digest_size} bytes")
    if "d" in desc.field_ids and sha1_digest is None:
        if alg is not HashAlgorithm.SHA1:
            raise UsageError("the 'd' field needs the file's SHA-1 digest (sha1_digest=)")
        sha1_digest = file_digest
    if sig is not None and sig[:1] not in (b"\x03", b"\x06"):
        sig = None  # ima_eventsig_init: only EVM_IMA_XATTR_DIGSIG / IMA_VERITY_DIGSIG
    values: dict[str, FieldValue] = {
        "d": sha1_digest, "n": _legacy_name(path), "n-ng": path,
        "d-ng": DigestWithAlgo(alg.kernel_name, file_digest),
        "d-ngv2": DigestWithAlgo(alg.kernel_name, file_digest, "ima"),
        "sig": sig, "iuid": uid, "igid": gid, "imode": mode,
    }
    if modsig is not None:
        values["d-modsig"] = DigestWithAlgo(alg.kernel_name, modsig[0])
        values["modsig"] = modsig[1]
    if evm is not None:
        values["evmsig"], values["xattrnames"], values["xattrlengths"], \
            values["xattrvalues"] = evm
    return _entry(desc, values, pcr, byte_order)


def ima_ng_entry(path: str, file_digest: bytes, alg: HashAlgorithm, *, pcr: int = 10,
                 byte_order: ByteOrder = "little") -> MeasurementEntry:
    """An ``ima-ng`` entry for a file (the default template since Linux 3.13)."""
    return file_entry("ima-ng", path, file_digest, alg, pcr=pcr, byte_order=byte_order)


def ima_buf_entry(name: str, buf: bytes, *, alg: HashAlgorithm = HashAlgorithm.SHA256,
                  template: str | TemplateDescriptor = "ima-buf", pcr: int = 10,
                  byte_order: ByteOrder = "little") -> MeasurementEntry:
    """process_buffer_measurement: ``d-ng`` = ima_hash of ``buf``, ``n-ng`` = ``name``
    (a keyring name, ``kexec-cmdline``, a critical-data label), ``buf`` = the buffer."""
    desc = _desc(template)
    values: dict[str, FieldValue] = {
        "d-ng": DigestWithAlgo(alg.kernel_name, alg.hash(buf)),
        "d-ngv2": DigestWithAlgo(alg.kernel_name, alg.hash(buf), "ima"),
        "n-ng": name, "n": _legacy_name(name), "buf": bytes(buf) or None,
        "d": HashAlgorithm.SHA1.hash(buf),
    }
    return _entry(desc, values, pcr, byte_order)


def violation_entry(template: str | TemplateDescriptor, path: str, *,
                    ima_hash: HashAlgorithm = HashAlgorithm.SHA256,
                    uid: int | None = None, gid: int | None = None, mode: int | None = None,
                    pcr: int = 10, byte_order: ByteOrder = "little") -> MeasurementEntry:
    """ima_add_violation: digests of zeros (ima_hash's size for d-ng/d-ngv2, 20 bytes for
    'd'), the file's name, no signature, and an all-zero stored template digest."""
    desc = _desc(template)
    zero = bytes(ima_hash.digest_size)
    values: dict[str, FieldValue] = {
        "d": bytes(_IMA_DIGEST_SIZE), "n": _legacy_name(path), "n-ng": path,
        "d-ng": DigestWithAlgo(ima_hash.kernel_name, zero),
        "d-ngv2": DigestWithAlgo(ima_hash.kernel_name, zero, "ima"),
        "iuid": uid, "igid": gid, "imode": mode,
    }
    return _entry(desc, values, pcr, byte_order, violation=True)


def boot_aggregate_entry(digest: DigestWithAlgo, *, template: str | TemplateDescriptor = "ima-ng",
                         sha1_digest: bytes | None = None, pcr: int = 10,
                         byte_order: ByteOrder = "little") -> MeasurementEntry:
    """ima_add_boot_aggregate: ``digest`` from ima_calc_boot_aggregate (see
    :func:`imasim.ima.replay.boot_aggregate`). For the legacy 'd' field the kernel
    computes a SHA-1 aggregate (``sha1_digest``; zeros without a SHA-1 bank)."""
    desc = _desc(template)
    if sha1_digest is None and digest.algo == "sha1":
        sha1_digest = digest.digest
    values: dict[str, FieldValue] = {
        "d": sha1_digest if sha1_digest is not None else bytes(_IMA_DIGEST_SIZE),
        "n": BOOT_AGGREGATE_NAME, "n-ng": BOOT_AGGREGATE_NAME,
        "d-ng": DigestWithAlgo(digest.algo, digest.digest),
        "d-ngv2": DigestWithAlgo(digest.algo, digest.digest, "ima"),
    }
    return _entry(desc, values, pcr, byte_order)
