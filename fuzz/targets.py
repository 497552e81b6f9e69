"""Fuzz targets: one per parser, each a function of ``bytes``.

The contract each target checks (STYLE.md, "Fuzz contract"): for ANY input, the parser
either returns or raises an :class:`imasim.errors.ImasimError`. Anything else (IndexError,
struct.error, a pyasn1 error, RecursionError, MemoryError...) is a bug.

Targets import their parser lazily, so one missing module does not stop the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


def _call(module: str, name: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        fn = getattr(importlib.import_module(module), name)
        return fn(data)

    return run


def _list_roundtrip(data: bytes) -> object:
    ima = importlib.import_module("imasim.ima")
    parsed = ima.parse_measurement_list(data)
    out = parsed.to_bytes()
    if out != data:
        raise AssertionError("a list that parses must re-serialize to the same bytes")
    return parsed


def _list_stream(data: bytes) -> object:
    import io

    ima = importlib.import_module("imasim.ima")
    return sum(1 for _ in ima.iter_measurement_list(io.BytesIO(data)))


def _list_kind_match(data: bytes) -> object:
    """detect_list_kind on any bytes, then the replay engine matching the list it names
    against quoted values (the streaming fast path and the scanner both run)."""
    import io

    codec = importlib.import_module("imasim.ima.codec")
    replay = importlib.import_module("imasim.ima.replay")
    H = importlib.import_module("imasim.algorithms").HashAlgorithm
    kind = codec.detect_list_kind(data)
    quoted = {H.SHA1: {10: bytes(20), 11: bytes(20)}, H.SHA256: {10: bytes(32)}}
    return replay.match_file(io.BytesIO(data), quoted, digest_alg=kind.digest_alg,
                             byte_order=kind.byte_order, chunk_size=97, padding="native")


def _ascii_list(data: bytes) -> object:
    ima = importlib.import_module("imasim.ima")
    return ima.parse_ascii_measurement_list(data.decode("utf-8", "replace"))


def _text(module: str, name: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        fn = getattr(importlib.import_module(module), name)
        return fn(data.decode("utf-8", "replace"))

    return run


def _pe_parse(data: bytes) -> object:
    pefile = importlib.import_module("imasim.sig.pefile")
    img = pefile.parse_pe(data)
    names = [s.name_text for s in img.sections]
    table = img.certificate_table
    checksum = pefile.pe_checksum(data, img.checksum_offset)
    return img.is_signed, names, len(table), checksum, img.spec_section_table_offset


def _pe_digest(data: bytes) -> object:
    ac = importlib.import_module("imasim.sig.authenticode")
    img = importlib.import_module("imasim.sig.pefile").parse_pe(data)
    out = []
    for rules in ac.DigestRules:
        ranges = ac.authenticode_ranges(img, rules=rules)
        for off, ln in ranges:
            if ln <= 0 or (off >= 0 and off + ln > len(data)):
                raise AssertionError(f"range ({off}, {ln}) outside a {len(data)}-byte image")
        out.append(ac.authenticode_digest(img, rules=rules))
    return out


def _pe_certificate_table(data: bytes) -> object:
    ac = importlib.import_module("imasim.sig.authenticode")
    img = importlib.import_module("imasim.sig.pefile").parse_pe(data)
    entries = ac.parse_certificate_table(img)
    for e in entries:
        if e.to_bytes() != bytes(img.raw[e.offset:e.offset + e.length]):
            raise AssertionError("a WIN_CERTIFICATE must re-serialize to its bytes")
    stripped = []
    for wrapper in ac.WrapperRules:
        try:
            stripped.append(ac.strip_sig_wrapper(img, wrapper=wrapper))
        except _imasim_error():
            pass
    return entries, stripped


def _pcr_file(data: bytes) -> object:
    verify = importlib.import_module("imasim.tpm.verify")
    out = []
    for form in ("serialized", "marshaled"):
        try:
            out.append(verify.read_pcr_file(data, form=form))
        except _imasim_error():
            pass
    return out


def _pcr_values(data: bytes) -> object:
    verify = importlib.import_module("imasim.tpm.verify")
    return verify.read_pcr_file(data, selection="sha256:0,1,10+sha1:0")


def _imasim_error() -> type[Exception]:
    return importlib.import_module("imasim.errors").ImasimError  # type: ignore[no-any-return]


_PE_TRUST: list[object] = []


def _pe_trust() -> tuple[object, object]:
    """Keyrings and a blacklist for the verify target: the test PKI's root (the corpus's
    signed images chain to it) and the Debian Secure Boot CA (the real signatures)."""
    if not _PE_TRUST:
        sys.path.insert(0, str(ROOT / "tests"))
        from pki import pki

        keys = importlib.import_module("imasim.keys")
        ring = keys.Keyring(".secondary_trusted_keys")
        ring.add(pki()["root"].as_key())
        platform = keys.Keyring(".platform")
        platform.add(keys.Key.from_certificate(
            (VECTORS / "debian" / "debian-secure-boot-ca.pem").read_bytes()))
        blacklist = keys.Blacklist()
        blacklist.add_binary_hash(bytes(32))
        _PE_TRUST.extend([(ring, platform), blacklist])
    return _PE_TRUST[0], _PE_TRUST[1]  # type: ignore[return-value]


def _pe_authenticode(data: bytes) -> object:
    ac = importlib.import_module("imasim.sig.authenticode")
    img = importlib.import_module("imasim.sig.pefile").parse_pe(data)
    keyrings, blacklist = _pe_trust()
    out: list[object] = []
    try:
        out.append(ac.parse_authenticode(img))
    except _imasim_error():
        pass
    for rules in ac.VerifyRules:
        try:
            out.append(ac.verify_authenticode(img, keyrings=keyrings, blacklist=blacklist,
                                              rules=rules))
        except _imasim_error():
            pass
    return out


def _spc_indirect_data(data: bytes) -> object:
    ac = importlib.import_module("imasim.sig.authenticode")
    spc = ac.parse_spc_indirect_data(data)
    if spc.to_bytes() != data:
        raise AssertionError("SpcIndirectDataContent must keep its bytes")
    return spc.content_octets, ac._mscode_parse(spc.content_octets)


def _eventlog(data: bytes) -> object:
    """Parse, round trip, decode as tpm2_eventlog (both versions), replay, verify, judge."""
    el = importlib.import_module("imasim.eventlog")
    events = importlib.import_module("imasim.eventlog.events")
    replay = importlib.import_module("imasim.eventlog.replay")
    judge = importlib.import_module("imasim.eventlog.judge")
    pcrs = importlib.import_module("imasim.tpm.pcrs")
    log = el.EventLog.parse(data)
    if log.encode() != data:
        raise AssertionError("a log that parses must re-serialize to the same bytes")
    docs = [events.describe_log(log, version=v) for v in (1, 2)]
    summaries = [events.summary(e) for e in log.events]
    r = replay.replay(log)
    values = {a: dict(b) for a, b in r.values.items() if b}
    if not values:
        return docs, summaries
    v = replay.verify_eventlog(log, pcrs.PcrBanks.unauthenticated(values),
                               pcr_indices=r.extended)
    return docs, summaries, judge.judge(v, judge.ReferenceState(secure_boot=True))


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    seeds: tuple[str, ...]  # globs under tests/vectors


_LISTS = "realkernel/*/stage*/ima/"

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("list-binary", _list_roundtrip, (_LISTS + "binary_runtime_measurements",)),
        Target("list-stream", _list_stream, (_LISTS + "binary_runtime_measurements",)),
        Target("list-kind-match", _list_kind_match, (_LISTS + "binary_runtime_measurements*",)),
        Target("list-ascii", _ascii_list, (_LISTS + "ascii_runtime_measurements*",)),
        Target("kexec-buffer", _call("imasim.kexec", "restore_kexec_buffer"),
               ("../corpus/kexec-buffer/*",)),
        Target("pkcs7", _call("imasim.sig.pkcs7", "parse_pkcs7"), ("../corpus/pkcs7/*",)),
        Target("modsig", _call("imasim.sig.modsig", "parse_modsig"), ("../corpus/modsig/*",)),
        Target("xattr", _call("imasim.sig.xattr", "parse_xattr"), ("../corpus/xattr/*",)),
        Target("tpm-attest", _call("imasim.tpm", "parse_attest"), ("../corpus/tpm-attest/*",)),
        Target("tpm-signature", _call("imasim.tpm", "parse_signature"),
               ("../corpus/tpm-signature/*",)),
        Target("tpm-public", _call("imasim.tpm", "parse_public"), ("../corpus/tpm-public/*",)),
        Target("tpm-pcr-file", _pcr_file, ("../corpus/tpm-pcr-file/*",)),
        Target("tpm-pcr-values", _pcr_values, ("../corpus/tpm-pcr-values/*",)),
        Target("tpm-quote-signature", _call("imasim.tpm.verify", "read_signature"),
               ("../corpus/tpm-signature/*", "../corpus/tpm-quote-signature/*")),
        Target("pcrread-yaml", _call("imasim.tpm.verify", "parse_pcrread_yaml"),
               ("../corpus/pcrread-yaml/*",)),
        Target("pcr-list", _text("imasim.tpm.verify", "parse_pcr_list"),
               ("../corpus/pcr-list/*",)),
        Target("x509-key", _call("imasim.keys", "parse_key"), ("debian/*.pem",)),
        Target("ima-policy", _text("imasim.ima.policy", "parse_ima_policy"),
               ("../corpus/ima-policy/*",)),
        Target("keyring-restriction", _text("imasim.keys", "parse_restriction"),
               ("../corpus/keyring-restriction/*",)),
        Target("pe-parse", _pe_parse, ("../corpus/pe-*/*",)),
        Target("pe-digest", _pe_digest, ("../corpus/pe-*/*",)),
        Target("pe-certificate-table", _pe_certificate_table, ("../corpus/pe-*/*",)),
        Target("pe-authenticode", _pe_authenticode, ("../corpus/pe-*/*",)),
        Target("spc-indirect-data", _spc_indirect_data, ("../corpus/spc-indirect-data/*",)),
        Target("ipe-policy", _text("imasim.ipe.policy", "parse_ipe_policy"),
               ("realkernel/k612-ipe/ipe-policies/*.policy", "../corpus/ipe-policy/*")),
        Target("cpio", _call("imasim.archive", "parse_cpio"), ("../corpus/cpio/*",)),
        Target("tar", _call("imasim.archive", "parse_tar"), ("../corpus/tar/*",)),
        Target("json-document", _text("imasim.io", "load_json_bounded"),
               ("realkernel/*/pcrs.json", "../corpus/json-document/*")),
        Target("toml-document", _text("imasim.io", "load_toml_bounded"),
               ("../../docs/scenarios/*.toml", "../corpus/toml-document/*")),
        Target("scenario", _text("imasim.scenario", "parse_scenario"),
               ("../../docs/scenarios/*.toml", "../corpus/toml-document/*")),
        Target("eventlog", _eventlog, ("realkernel/*/stage1/tpm0/binary_bios_measurements",
                                       "../corpus/eventlog/*")),
    )
}


def seeds(target: Target) -> list[bytes]:
    out: list[bytes] = []
    for pattern in target.seeds:
        for p in sorted(VECTORS.glob(pattern)):
            if p.is_file() and p.stat().st_size <= 4 * 1024 * 1024:
                out.append(p.read_bytes())
    return out or [b""]
