"""The notebook reprs (``_repr_html_``): escaped, bounded, and saying what matters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import overload

import pytest

from imasim import _html
from imasim.algorithms import HashAlgorithm as H
from imasim.attest import ReferenceValues, attest
from imasim.ima import DigestWithAlgo, MeasurementEntry, parse_measurement_list
from imasim.ima.builders import ima_buf_entry, violation_entry
from imasim.ima.codec import MeasurementList
from imasim.ima.replay import match, replay
from imasim.keys import Key, Keyring, restrict_link_reject
from imasim.machine import Machine
from imasim.tpm import PcrSelection, SoftTpm

EVIL = '<script>alert("x")</script>&<b>'


def entry(path: str, data: bytes = b"x") -> MeasurementEntry:
    return MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", H.SHA256.hash(data)),
                                              path])


class _Checker(HTMLParser):
    """Collects tags and checks that every opened element is closed in order."""

    VOID = frozenset({"br", "hr", "img", "meta", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check(markup: str) -> _Checker:
    """Well-formed, self-contained markup; returns the parse for content checks."""
    c = _Checker()
    c.feed(markup)
    c.close()
    assert not c.stack, c.stack
    assert "script" not in c.tags and "img" not in c.tags and "link" not in c.tags
    assert "http:" not in markup and "https:" not in markup and "url(" not in markup
    return c


def text(markup: str) -> str:
    return "".join(check(markup).text)


# -- escaping ----------------------------------------------------------------------------
def test_paths_from_the_list_are_escaped() -> None:
    lst = MeasurementList([entry(EVIL)])
    for markup in (lst._repr_html_(), lst[0]._repr_html_()):
        assert "<script>" not in markup and "&lt;script&gt;" in markup
        assert EVIL in text(markup)   # the browser shows the text as it was


def test_keyring_names_descriptions_and_reasons_are_escaped() -> None:
    ring = Keyring(EVIL, restriction=restrict_link_reject)
    key = Key.from_public_key(_ec_key().public_key(), description=EVIL)
    with pytest.raises(Exception):  # noqa: B017 - the refusal is what gets logged
        ring.add(key)
    open_ring = Keyring("open")
    open_ring.add(key)
    for markup in (ring._repr_html_(), open_ring._repr_html_()):
        assert "<script>" not in markup
        assert EVIL in text(markup)


def _extended_tpm(entries: list[MeasurementEntry]) -> SoftTpm:
    tpm = SoftTpm((H.SHA256,))
    for e in entries:
        tpm.extend(e.pcr, {H.SHA256: e.extend_value(H.SHA256)})
    return tpm


def test_attestation_failures_and_errors_are_escaped() -> None:
    lst = MeasurementList([entry(EVIL)])
    tpm = _extended_tpm(list(lst))
    ak = tpm.create_ak("ecc", seed=b"html")
    q = tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"n" + EVIL.encode())
    for nonce in (b"other", b"n" + EVIL.encode()):
        rep = attest(quote_attest=q.attest, quote_signature=q.signature,
                     ak_public=ak.public_pem, nonce=nonce, pcr_values=q.values_by_bank(),
                     entries=list(lst), reference=ReferenceValues({}))
        markup = rep._repr_html_()
        assert "<script>" not in markup
        t = text(markup)
        assert "NOT TRUSTED" in t
        if nonce == b"other":  # the quote fails: nothing is replayed or appraised
            assert "NonceMismatchError" in t and "not replayed" in t
        else:
            assert EVIL in t and "unknown-path" in t


# -- bounding ----------------------------------------------------------------------------
class _Lazy(Sequence[MeasurementEntry]):
    """A million entries that exist only when read; counts the reads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> MeasurementEntry: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[MeasurementEntry]: ...

    def __getitem__(self, i: int | slice) -> MeasurementEntry | Sequence[MeasurementEntry]:
        assert isinstance(i, int)
        self.reads += 1
        return entry(f"/bin/file{i}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the renderer must not walk the whole list")


def test_a_million_entries_show_the_first_and_last_rows_only() -> None:
    lazy = _Lazy(1_000_000)
    markup = _html.measurement_list(lazy, digest_alg=H.SHA1, byte_order="little")
    assert lazy.reads == 2 * _html.EDGE_ROWS
    t = text(markup)
    assert "1000000 entries" in t
    assert "/bin/file0" in t and f"/bin/file{_html.EDGE_ROWS - 1}" in t
    assert "/bin/file999999" in t and f"/bin/file{1_000_000 - _html.EDGE_ROWS}" in t
    assert f"/bin/file{_html.EDGE_ROWS}<" not in markup
    assert f"{1_000_000 - 2 * _html.EDGE_ROWS} more" in t
    assert len(markup) < 20_000


def test_a_parsed_list_of_100k_entries_renders_fast_and_small() -> None:
    rec = entry("/usr/bin/true").to_bytes()
    lst = parse_measurement_list(rec * 100_000)
    t0 = time.perf_counter()
    markup = lst._repr_html_()
    assert time.perf_counter() - t0 < 0.5
    assert len(markup) < 20_000
    assert markup.count("/usr/bin/true") == 2 * _html.EDGE_ROWS


def test_short_lists_show_every_row() -> None:
    n = 2 * _html.EDGE_ROWS
    lst = MeasurementList([entry(f"/f{i}") for i in range(n)])
    t = text(lst._repr_html_())
    assert all(f"/f{i}" in t for i in range(n)) and "more" not in t


def test_long_values_and_many_failures_are_cut() -> None:
    big = ima_buf_entry("kexec-cmdline", b"A" * 100_000, alg=H.SHA256)
    markup = big._repr_html_()
    assert len(markup) < 10_000 and "(100000 bytes)" in text(markup)
    long_path = entry("/" + "p" * 10_000)
    assert len(long_path._repr_html_()) < 10_000
    lst = [entry(f"/u{i}") for i in range(5000)]
    tpm = _extended_tpm(lst)
    ak = tpm.create_ak("ecc", seed=b"html")
    q = tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"n")
    rep = attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                 nonce=b"n", pcr_values=q.values_by_bank(), entries=lst,
                 reference=ReferenceValues({}))
    assert len(rep.failures) >= 5000
    markup = rep._repr_html_()
    assert len(markup) < 40_000 and "/u4999" in text(markup) and "/u2500<" not in markup


# -- content -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def machine() -> Machine:
    m = Machine.create(cmdline="ima_policy=tcb", banks=(H.SHA1, H.SHA256, H.SHA384))
    m.boot()
    m.add_file("/usr/bin/true", b"\x7fELF")
    m.exec("/usr/bin/true")
    return m


def test_list_rows_say_pcr_template_digests_and_name(machine: Machine) -> None:
    lst = machine.measurements
    t = text(lst._repr_html_())
    assert f"{len(lst)} entries, sha1 template digests, little endian" in t
    assert "boot_aggregate" in t and "/usr/bin/true" in t and "ima-ng" in t
    fd = lst[1].file_digest
    assert fd is not None and fd.digest.hex() in lst._repr_html_()   # in the cell's title


def test_violations_are_marked() -> None:
    lst = MeasurementList([entry("/ok"), violation_entry("ima-ng", "/tomtou",
                                                         ima_hash=H.SHA256)])
    markup = lst._repr_html_()
    rows = markup.split("<tr")
    bad = next(r for r in rows if "/tomtou" in r)
    good = next(r for r in rows if "/ok" in r)
    assert "color:" in bad.split(">", 1)[0] and "color:" not in good.split(">", 1)[0]
    assert "extended as 0xff" in text(lst[1]._repr_html_())


def test_entry_shows_every_field_as_the_kernel_prints_it(machine: Machine) -> None:
    e = machine.measurements[1]
    t = text(e._repr_html_())
    assert e.template_digest.hex() in t
    for value in e.ascii_line().split()[3:]:
        assert value in t
    sig = MeasurementEntry.create("ima-sig", [DigestWithAlgo("sha256", bytes(32)), "/x",
                                              bytes.fromhex("030204")])
    assert "030204" in text(sig._repr_html_())


def test_malformed_entry_renders() -> None:
    e = MeasurementEntry(10, "ima-ng", bytes(20), b"\xff\xff\xff\xff")
    t = text(e._repr_html_())
    assert "malformed" in t
    assert "malformed" in text(MeasurementList._repr_html_(  # type: ignore[arg-type]
        _FakeList([e])))


class _FakeList(list[MeasurementEntry]):
    digest_alg = H.SHA1
    byte_order = "little"


def test_tpm_shows_every_pcr_of_every_bank(machine: Machine) -> None:
    markup = machine.tpm._repr_html_()
    t = text(markup)
    assert "banks sha1, sha256, sha384" in t
    for a in machine.tpm.banks:
        assert machine.tpm.read(a, 10).hex() in markup
    assert markup.count("<tr>") == 24 + 1   # a row per PCR and the header
    assert (H.SHA256.ones.hex()) in markup   # PCR 17 starts as all ones


def test_replay_and_match_reports(machine: Machine) -> None:
    lst = machine.measurements
    r = replay(lst, banks=(H.SHA256,))
    assert f"after {len(lst)} entries" in text(r._repr_html_())
    assert r.pcrs[H.SHA256][10].hex() in r._repr_html_()
    good = text(match(lst, machine.pcr_values())._repr_html_())
    assert "status: match" in good and f"matches after {len(lst)} of {len(lst)}" in good
    wrong = {H.SHA256: {10: b"\x01" * 32}}
    bad_markup = match(lst, wrong)._repr_html_()
    bad = text(bad_markup)
    assert "mismatch" in bad and "does not match" in bad
    assert "quoted" in bad and "replayed" in bad


def test_attestation_report_trusted(machine: Machine) -> None:
    ak = machine.tpm.create_ak("ecc", seed=b"html-report")
    q = machine.tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"nonce")
    rep = attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                 nonce=b"nonce", pcr_values=q.values_by_bank(),
                 entries=list(machine.measurements))
    t = text(rep._repr_html_())
    assert rep.trusted
    assert "TRUSTED" in t and "NOT TRUSTED" not in t and "quote: valid" in t
    assert "boot_aggregate: ok" in t and "sha256" in t


def test_keyring_shows_restriction_links_keys_and_decisions(machine: Machine) -> None:
    from pathlib import Path

    ca = Key.from_certificate(Path("tests/vectors/debian/debian-secure-boot-ca.pem")
                              .read_bytes())
    builtin = Keyring(".builtin_trusted_keys")
    builtin.add(ca)
    builtin.restrict(restrict_link_reject)
    secondary = Keyring(".secondary_trusted_keys")
    secondary.link(builtin)
    t = text(builtin._repr_html_())
    assert "restrict_link_reject" in t and ca.description in t and "1 key(s)" in t
    assert "admitted" in t or "yes" in t
    t2 = text(secondary._repr_html_())
    assert "linked keyrings: .builtin_trusted_keys (1 keys)" in t2 and "no keys" in t2
    assert "none (anyone may add)" in t2


def _ec_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.derive_private_key(7, ec.SECP256R1())


def test_machine_html_shows_its_repr_escaped(machine: Machine) -> None:
    """The notebook showed nothing for a Machine: its ``<Machine ...>`` was an unknown tag."""
    markup = machine._repr_html_()
    assert "<Machine" not in markup and "&lt;Machine" in markup
    t = text(markup)
    assert repr(machine) in t and "/usr/bin/true" in t


def test_every_notebook_repr_is_visible_text(machine: Machine) -> None:
    """Every object the notebook ends a cell with: its markup parses, and its repr (what a
    reader sees without HTML) is shown as text, not swallowed as a tag."""
    ak = machine.tpm.create_ak("ecc", seed=b"visible")
    q = machine.tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"n")
    lst = machine.measurements
    rep = attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                 nonce=b"n", pcr_values=q.values_by_bank(), entries=list(lst))
    for obj in (machine, lst, lst[0], machine.tpm, replay(lst, banks=(H.SHA256,)),
                match(lst, machine.pcr_values()), rep):
        markup = obj._repr_html_()  # type: ignore[attr-defined]
        shown = text(markup)
        assert shown.strip(), type(obj).__name__
        if repr(obj).startswith("<"):
            assert repr(obj) in shown or f"<{type(obj).__name__}" not in markup, \
                type(obj).__name__
