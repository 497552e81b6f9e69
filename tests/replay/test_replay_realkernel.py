"""Each real capture gets the verdict its notes.md describes, in every captured bank."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.ima.replay import MatchStatus, boot_aggregate, check_boot_aggregate, match, replay
from realdata import stage, stages

#: the second boots of Debian kernels without CONFIG_IMA_KEXEC start a fresh list
NOT_CARRIED = {"kexec-carry/stage2", "template-mix-sha512/stage2"}
#: a kernel with CONFIG_IMA_KEXEC whose restore stopped at the first legacy 'ima' entry,
#: and one (6.1) that copied the list at load, before a file measured in the window
TRUNCATED = {"k612-custom-ima-kexec-template-mix/stage2", "custom-ima-kexec-late-measure/stage2"}
WHOLE_HISTORY = [s for s in stages() if s.id not in NOT_CARRIED | TRUNCATED]


@pytest.mark.parametrize("st", WHOLE_HISTORY, ids=[s.id for s in WHOLE_HISTORY])
def test_whole_history_lists_replay_to_the_captured_pcrs(st) -> None:  # type: ignore[no-untyped-def]
    lst, pcrs = st.entries(), st.pcrs()
    result = match(lst, pcrs)
    assert result.status is MatchStatus.MATCH
    assert {b.bank for b in result.banks} == set(pcrs)
    assert all(b.matched_at == len(lst) for b in result.banks)
    assert result.bad_digests == ()
    assert check_boot_aggregate(lst[0], pcrs)


def test_debian_6_1_sha384_bank_is_padded_sha1_and_detected() -> None:
    st = stage("boot-tcb-ima-ng-sha256")
    result = match(st.entries(), st.pcrs())
    padded = {b.bank for b in result.banks if b.padded}
    assert padded == {H.SHA384}
    # forcing native sha384 does not match
    forced = match(st.entries(), st.pcrs(), padding={H.SHA384: "native"})
    assert forced.status is MatchStatus.MISMATCH
    assert {(m.bank, m.pcr) for m in forced.mismatches} == {(H.SHA384, 10)}


def test_debian_6_12_sha384_is_native() -> None:
    st = stage("k612-boot-tcb-ima-ng-sha256")
    result = match(st.entries(), st.pcrs())
    assert not any(b.padded for b in result.banks)


def test_kexec_without_ima_kexec_does_not_match_alone_but_does_after_the_old_list() -> None:
    s1, s2 = stage("kexec-carry", "stage1"), stage("kexec-carry", "stage2")
    alone = match(s2.entries(), s2.pcrs())
    assert alone.status is MatchStatus.MISMATCH
    assert {m.bank for m in alone.mismatches} == {H.SHA1, H.SHA256, H.SHA384}
    both = match(list(s1.entries()) + list(s2.entries()), s2.pcrs())
    assert both.status is MatchStatus.MATCH
    # the new kernel starts its own list with the same boot_aggregate
    assert check_boot_aggregate(s2.entries()[0], s2.pcrs())


def test_template_mix_pcr_11_legacy_ima_and_a_fresh_list_after_kexec() -> None:
    s1, s2 = stage("template-mix-sha512", "stage1"), stage("template-mix-sha512", "stage2")
    l1, l2 = s1.entries(), s2.entries()
    assert {e.template_name for e in l1} == {"ima", "ima-sig", "ima-ng", "ima-buf"}
    assert {e.pcr for e in l1} == {10, 11}
    one = match(l1, s1.pcrs())
    assert one.status is MatchStatus.MATCH
    assert {b.bank for b in one.banks if b.padded} == {H.SHA384}
    assert match(l2, s2.pcrs()).status is MatchStatus.MISMATCH
    assert match(list(l1) + list(l2), s2.pcrs()).status is MatchStatus.MATCH


def test_carried_list_replays_from_zero_after_kexec() -> None:
    s1, s2 = stage("custom-ima-kexec-carry", "stage1"), stage("custom-ima-kexec-carry", "stage2")
    l1, l2 = s1.entries(), s2.entries()
    assert l2.to_bytes().startswith(l1.to_bytes())
    assert match(l2, s2.pcrs()).status is MatchStatus.MATCH
    # the second boot_aggregate, appended after the carried entries
    assert check_boot_aggregate(l2[len(l1)], s2.pcrs())
    # the stage-1 list is a prefix of what the stage-2 PCRs cover
    prefix = match(l2, s1.pcrs())
    assert prefix.status is MatchStatus.PREFIX
    assert {b.matched_at for b in prefix.banks} == {len(l1)}


def test_a_restore_stopped_by_a_legacy_entry_keeps_a_prefix_that_does_not_replay() -> None:
    """6.12 with IMA_KEXEC (custom build): the next kernel restores the carried list up
    to the first legacy 'ima' entry (its 3 fields are not the 4 of the restored template
    header) and drops the rest, as restore_kexec_buffer does; the TPM kept every extend,
    so only the whole stage-1 list followed by the new entries replays."""
    from imasim.kexec import pack_kexec_buffer, restore_kexec_buffer

    s1 = stage("k612-custom-ima-kexec-template-mix", "stage1")
    s2 = stage("k612-custom-ima-kexec-template-mix", "stage2")
    l1, l2 = list(s1.entries()), list(s2.entries())
    restored = restore_kexec_buffer(pack_kexec_buffer(l1))
    first_legacy = next(i for i, e in enumerate(l1) if e.template_name == "ima")
    assert restored.stopped_at == first_legacy == 3
    assert list(restored.entries) == l2[:first_legacy]
    assert l2[first_legacy].event_name == "boot_aggregate"
    dmesg = (s2.path / "dmesg.txt").read_text()
    assert "nr of fields mismatch: expected: 4, current: 3" in dmesg
    assert match(l2, s2.pcrs()).status is MatchStatus.MISMATCH
    whole = match(l1 + l2[first_legacy:], s2.pcrs())
    assert whole.status is MatchStatus.MATCH
    assert check_boot_aggregate(l2[first_legacy], s2.pcrs())


def test_boot_aggregate_values() -> None:
    pcrs = stage("boot-tcb-ima-ng-sha256").pcrs()
    assert str(boot_aggregate(pcrs)) == (
        "sha256:835fcff8ab9c1370366ec5f4819f14b2a293f14319b791942b90e8b5bf8438d9")
    assert boot_aggregate(pcrs, ima_hash=H.SHA1, banks=[H.SHA1]).digest.hex() == (
        "5e838e19d723d55ed19c1ab4340d7c3c2243a12f")


def test_incremental_replay_equals_one_pass() -> None:
    lst = stage("custom-ima-kexec-carry", "stage2").entries()
    whole = replay(lst, banks=(H.SHA1, H.SHA256, H.SHA384))
    first = replay(list(lst)[:10], banks=(H.SHA1, H.SHA256, H.SHA384))
    saved = type(first.state).from_dict(first.state.to_dict())
    rest = replay(list(lst)[10:], banks=(H.SHA1, H.SHA256, H.SHA384), start=saved)
    assert rest.pcrs == whole.pcrs and rest.count == len(lst)


def test_tampered_entries_are_named() -> None:
    lst = list(stage("boot-tcb-ima-ng-sha256").entries())
    pcrs = stage("boot-tcb-ima-ng-sha256").pcrs()
    bad = lst[3]._replace(template_data=lst[3].template_data.replace(b"hello", b"hellO"))
    tampered = [*lst[:3], bad, *lst[4:]]
    result = match(tampered, pcrs)
    assert result.status is MatchStatus.MISMATCH
    assert result.bad_digests == (3,)
    dropped = match(lst[:3] + lst[4:], pcrs)
    assert dropped.status is MatchStatus.MISMATCH
    swapped = match([lst[0], lst[2], lst[1], *lst[3:]], pcrs)
    assert swapped.status is MatchStatus.MISMATCH


@pytest.mark.parametrize("chunk", [7, 100, 1 << 20])
def test_replay_file_equals_replay_and_reports_offsets(chunk: int) -> None:
    import io

    from imasim.errors import ParseError
    from imasim.ima.replay import replay_file

    for st in stages():
        banks = (H.SHA1, H.SHA256)
        want = replay(st.entries(), banks=banks)
        got = replay_file(io.BytesIO(st.binary), banks=banks, chunk_size=chunk)
        assert got.pcrs == want.pcrs and got.count == want.count
        assert got.bad_digests == want.bad_digests
    data = stage("boot-tcb-ima-ng-sha256").binary
    with pytest.raises(ParseError) as exc:
        replay_file(io.BytesIO(data[:-3]), chunk_size=chunk)
    assert exc.value.offset is not None and exc.value.offset < len(data)
    tampered = bytearray(data)
    tampered[-5] ^= 1  # inside the last entry's template data
    bad = replay_file(io.BytesIO(bytes(tampered)), chunk_size=chunk)
    assert bad.bad_digests == (7,)


def test_a_sha512_bank_is_chosen_for_boot_aggregate_when_ima_hash_is_sha512() -> None:
    """k612-boot-tcb-four-banks: a TPM with sha1, sha256, sha384 and sha512 banks and
    ima_hash=sha512 on 6.12: five lists (classic + one per bank), each bank native."""
    st = stage("k612-boot-tcb-four-banks")
    lst, pcrs = st.entries(), st.pcrs()
    agg = lst[0].file_digest
    assert agg is not None and agg.algo == "sha512"
    assert agg.digest == H.SHA512.hash(b"".join(pcrs[H.SHA512][i] for i in range(10)))
    assert agg.digest == boot_aggregate(pcrs, ima_hash=H.SHA512, kernel_version=(6, 12)).digest
    result = match(lst, pcrs)
    assert result.status is MatchStatus.MATCH
    assert {b.bank for b in result.banks} == {H.SHA1, H.SHA256, H.SHA384, H.SHA512}
    assert not any(b.padded for b in result.banks)
