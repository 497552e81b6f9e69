"""Huge numbers in text formats are parse errors (never int()'s ValueError past 4,300
digits), and names that are not UTF-8 go out as the bytes the kernel wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from budget import MB, within_budget
from imasim._wire import decimal
from imasim.algorithms import HashAlgorithm
from imasim.errors import ImasimError, ParseError, PolicyError
from imasim.ima import MeasurementList, ima_ng_entry, parse_ascii_measurement_list
from imasim.ima.policy import parse_ima_policy
from imasim.ipe.policy import parse_ipe_policy
from imasim.keys.keyring import parse_restriction

HUGE = "9" * 5000


@pytest.mark.parametrize("text, limit, value", [
    ("0", 5, 0), ("5", 5, 5), ("6", 5, None), ("0005", 5, 5), (HUGE, 2**64, None),
    ("0" * 5000 + "7", 9, 7), ("", 9, None), ("-1", 9, None), ("1_0", 99, None),
    ("１", 9, None), (" 1", 9, None), (b"42", 42, 42), (b"43", 42, None),
])
def test_decimal(text: str | bytes, limit: int, value: int | None) -> None:
    assert decimal(text, limit) == value


def test_a_5000_digit_pcr_in_an_ascii_list() -> None:
    line = f"{HUGE} {'00' * 20} ima-ng sha1:{'00' * 20} /init\n"
    with pytest.raises(ParseError) as info:
        parse_ascii_measurement_list(line)
    assert info.value.field == "pcr" and info.value.line == 1


def test_a_5000_digit_ipe_policy_version() -> None:
    with pytest.raises(PolicyError, match="out of range"):
        parse_ipe_policy(f"policy_name=a policy_version=0.{HUGE}.0\nDEFAULT action=ALLOW\n")


@pytest.mark.parametrize("rule", [f"measure uid={HUGE}", f"measure pcr={HUGE}",
                                  "measure fowner=4294967296"])
def test_huge_numbers_in_an_ima_policy(rule: str) -> None:
    with pytest.raises(PolicyError, match="out of range"):
        parse_ima_policy(rule)


def test_huge_key_id_in_a_restriction() -> None:
    with pytest.raises(ImasimError):
        parse_restriction(f"key_or_keyring:{HUGE}")


def test_a_4mb_number_is_refused_in_linear_time() -> None:
    line = "9" * (4 * MB) + f" {'00' * 20} ima-ng sha1:{'00' * 20} /init\n"
    spent = within_budget(lambda: parse_ascii_measurement_list(line), len(line))
    assert isinstance(spent.error, ParseError)


def _non_utf8_list(tmp_path: Path) -> tuple[Path, MeasurementList]:
    path = b"/usr/lib/caf\xe9/\xff\xfe.so".decode("utf-8", "surrogateescape")
    lst = MeasurementList([ima_ng_entry(path, bytes(32), HashAlgorithm.SHA256)])
    f = tmp_path / "list.bin"
    f.write_bytes(lst.to_bytes())
    return f, lst


def _imasim(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "imasim", *args], capture_output=True,
                          check=False)


def test_log_convert_to_ascii_writes_the_name_bytes(tmp_path: Path) -> None:
    f, lst = _non_utf8_list(tmp_path)
    out = tmp_path / "list.txt"
    run = _imasim("log", "convert", str(f), str(out), "--to", "ascii")
    assert run.returncode == 0, run.stderr
    text = out.read_bytes()
    assert b" /usr/lib/caf\xe9/\xff\xfe.so\n" in text
    # and it reads back to the same binary list (what ascii_runtime_measurements holds)
    back = parse_ascii_measurement_list(text.decode("utf-8", "surrogateescape"))
    assert back.to_bytes() == lst.to_bytes()
    show = _imasim("log", "show", str(f))
    assert show.returncode == 0, show.stderr
    assert show.stdout == text


def test_decode_only_commands_call_an_unknown_algorithm_bad_input(tmp_path: Path) -> None:
    # imasig show of hash_algo 200 (>= HASH_ALGO__LAST): bad input, not "verification failed"
    value = tmp_path / "ima.sig"
    value.write_bytes(bytes([3, 2, 200]) + bytes(4) + (4).to_bytes(2, "big") + bytes(4))
    run = _imasim("imasig", "show", str(value))
    assert run.returncode == 2 and run.stderr.startswith(b"imasim:"), run.stderr


def test_verification_still_says_enopkg() -> None:
    from imasim.errors import UnknownAlgorithmError, UnsupportedAlgorithmError
    from imasim.keys import Keyring
    from imasim.sig.xattr import parse_xattr, verify_xattr

    value = bytes([3, 2, 200]) + bytes(4) + (4).to_bytes(2, "big") + bytes(4)
    with pytest.raises(UnknownAlgorithmError):
        parse_xattr(value)
    with pytest.raises(UnsupportedAlgorithmError, match="ENOPKG"):
        verify_xattr(value, bytes(32), keyring=Keyring(".ima"))
