"""imasim's TPM against the real tools: tpm2_checkquote, and swtpm driven by tpm2-tools."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import (
    NonceMismatchError,
    PcrMismatchError,
    SignatureInvalidError,
    UsageError,
)
from imasim.tpm import PcrSelection, SoftTpm, parse_pcr_file, verify_quote, write_pcr_file
from imasim.tpm.marshal import parse_public
from tools import need

pytestmark = pytest.mark.interop

NONCE = bytes.fromhex("00112233445566778899")


def checkquote(tmp: Path, pem: bytes, msg: bytes, sig: bytes, pcrs: bytes, halg: str,
               nonce: bytes = NONCE) -> int:
    files = {"ak.pem": pem, "q.msg": msg, "q.sig": sig, "q.pcrs": pcrs}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    proc = subprocess.run(
        [need("tpm2_checkquote"), "-u", str(tmp / "ak.pem"), "-m", str(tmp / "q.msg"),
         "-s", str(tmp / "q.sig"), "-f", str(tmp / "q.pcrs"), "-g", halg, "-q", nonce.hex()],
        capture_output=True, timeout=60)
    return proc.returncode


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
@pytest.mark.parametrize("bank", [H.SHA1, H.SHA256])
def test_tpm2_checkquote_accepts_imasim_quotes(kind: str, bank: H, tmp_path: Path) -> None:
    tpm = SoftTpm((H.SHA1, H.SHA256))
    for i in range(3):
        tpm.extend(10, {a: a.hash(bytes([i])) for a in tpm.banks})
    ak = tpm.create_ak(kind, seed=kind.encode())  # type: ignore[arg-type]
    q = tpm.quote(ak, {bank: [0, 7, 10]}, NONCE)
    pcrs = write_pcr_file(q.selection, [v for _, _, v in q.pcr_values])
    assert checkquote(tmp_path, ak.public_pem, q.attest, q.signature, pcrs, "sha256") == 0
    # one byte of the message changed
    msg = bytearray(q.attest)
    msg[-5] ^= 0x40
    assert checkquote(tmp_path, ak.public_pem, bytes(msg), q.signature, pcrs, "sha256") != 0
    # one PCR value changed
    vals = [v for _, _, v in q.pcr_values]
    vals[-1] = bytes(len(vals[-1]))
    bad = write_pcr_file(q.selection, vals)
    assert checkquote(tmp_path, ak.public_pem, q.attest, q.signature, bad, "sha256") != 0
    # another nonce
    assert checkquote(tmp_path, ak.public_pem, q.attest, q.signature, pcrs, "sha256",
                      nonce=b"\x01") != 0


# -- swtpm -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[dict[str, str]]:
    binary = need("swtpm")
    need("tpm2_pcrextend")
    state = tmp_path / "swtpm-state"
    state.mkdir()
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1", "--tpmstate",
             f"dir={state}", "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("swtpm did not start")
    env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:host=127.0.0.1,port={port}")
    try:
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def read_swtpm(env: dict[str, str]) -> dict[H, dict[int, bytes]]:
    out = run(env, "tpm2_pcrread", "sha1:all+sha256:all")
    values: dict[H, dict[int, bytes]] = {}
    bank: H | None = None
    for line in out.splitlines():
        line = line.strip()
        if line.endswith(":") and line[:-1] in ("sha1", "sha256"):
            bank = H.from_name(line[:-1])
        elif ":" in line and bank is not None:
            idx, val = line.split(":", 1)
            values.setdefault(bank, {})[int(idx)] = bytes.fromhex(val.strip()[2:])
    return values


def test_differential_extends_and_resets_against_swtpm(swtpm: dict[str, str]) -> None:
    ours = SoftTpm((H.SHA1, H.SHA256))
    steps: list[tuple[str, int, bytes]] = []
    for i in range(12):
        steps.append(("extend", [10, 16, 23, 11, 0][i % 5], bytes([i]) * 3))
        if i in (4, 9):
            steps.append(("reset", 16, b""))
        if i == 7:
            steps.append(("reset", 23, b""))
    for op, pcr, seed in steps:
        if op == "extend":
            digests = {a: a.hash(seed) for a in ours.banks}
            ours.extend(pcr, digests)
            spec = ",".join(f"{a.kernel_name}={d.hex()}" for a, d in digests.items())
            run(swtpm, "tpm2_pcrextend", f"{pcr}:{spec}")
        else:
            ours.reset(pcr)
            run(swtpm, "tpm2_pcrreset", str(pcr))
    real = read_swtpm(swtpm)
    for alg in ours.banks:
        for i in range(24):
            assert real[alg][i] == ours.read(alg, i), (alg, i)


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_imasim_verifies_swtpm_quotes(kind: str, swtpm: dict[str, str], tmp_path: Path) -> None:
    run(swtpm, "tpm2_pcrextend", "10:sha256=" + "ab" * 32, cwd=tmp_path)
    run(swtpm, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub", cwd=tmp_path)
    g, s = ("rsa", "rsassa") if kind == "rsa" else ("ecc", "ecdsa")
    run(swtpm, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", g, "-g", "sha256", "-s", s,
        "-u", "ak.pem", "-f", "pem", cwd=tmp_path)
    run(swtpm, "tpm2_flushcontext", "-t")  # swtpm has 3 transient slots and no RM
    run(swtpm, "tpm2_quote", "-c", "ak.ctx", "-l", "sha1:0,10+sha256:0,10", "-q", NONCE.hex(),
        "-m", "q.msg", "-s", "q.sig", "-o", "q.pcrs", "-g", "sha256", cwd=tmp_path)
    # another signature hash than the AK's: tpm2_quote refuses it (as a TPM would with
    # TPM_RC_SCHEME), and so does imasim
    other = subprocess.run(["tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0", "-g", "sha1",
                            "-m", "x.msg", "-s", "x.sig"], env=swtpm, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "only supports signature hash alg sha256" in other.stderr
    ours = SoftTpm()
    with pytest.raises(UsageError, match="TPM_RC_SCHEME"):
        ours.quote(ours.create_ak(kind, seed=b"s"), {H.SHA256: [0]}, b"",  # type: ignore[arg-type]
                   hash_alg=H.SHA1)
    msg, sig = (tmp_path / "q.msg").read_bytes(), (tmp_path / "q.sig").read_bytes()
    pem = (tmp_path / "ak.pem").read_bytes()
    sel, values = parse_pcr_file((tmp_path / "q.pcrs").read_bytes())
    assert sel == PcrSelection({H.SHA1: [0, 10], H.SHA256: [0, 10]})
    verify_quote(msg, sig, pem, nonce=NONCE, pcr_values=values)
    with pytest.raises(NonceMismatchError):
        verify_quote(msg, sig, pem, nonce=b"x", pcr_values=values)
    tampered = {H.SHA1: values[H.SHA1], H.SHA256: {0: values[H.SHA256][0], 10: bytes(32)}}
    with pytest.raises(PcrMismatchError):
        verify_quote(msg, sig, pem, nonce=NONCE, pcr_values=tampered)
    bad = bytearray(msg)
    bad[10] ^= 1
    with pytest.raises(SignatureInvalidError):
        verify_quote(bytes(bad), sig, pem, nonce=NONCE, pcr_values=values)


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_ak_template_is_tpm2_createaks(kind: str, swtpm: dict[str, str], tmp_path: Path) -> None:
    """swtpm's tpm2_createak TPM2B_PUBLIC and imasim's differ only in the key itself, and
    imasim's Name of swtpm's public area is the Name tpm2_createak reports."""
    run(swtpm, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub", cwd=tmp_path)
    g, s = ("rsa", "rsassa") if kind == "rsa" else ("ecc", "ecdsa")
    run(swtpm, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", g, "-g", "sha256", "-s", s,
        "-u", "ak.pub", "-f", "tss", "-n", "ak.name", cwd=tmp_path)
    real = parse_public((tmp_path / "ak.pub").read_bytes())
    assert real.name == (tmp_path / "ak.name").read_bytes()
    ours = SoftTpm().create_ak(kind, seed=b"template").public_area  # type: ignore[arg-type]
    key_fields = ({"modulus": b""} if kind == "rsa" else {"x": b"", "y": b""})
    assert replace(real, raw=b"", **key_fields) == replace(ours, **key_fields)
    assert len(real.to_bytes()) == len(ours.to_bytes())


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_swtpm_quote_every_file_form(kind: str, swtpm: dict[str, str], tmp_path: Path) -> None:
    """A quote swtpm makes through tpm2_quote, in every form tpm2-tools writes (TPMT and
    plain signatures; serialized and values PCR files; tpm2_pcrread's YAML and -o), and
    forged PCR files: imasim (library and CLI) and tpm2_checkquote give the same verdict."""
    from imasim.cli import main
    from imasim.tpm.verify import parse_pcrread_yaml, read_pcr_file, read_signature

    run(swtpm, "tpm2_pcrextend", "10:sha256=" + "cd" * 32, cwd=tmp_path)
    run(swtpm, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub", cwd=tmp_path)
    g, s = ("rsa", "rsassa") if kind == "rsa" else ("ecc", "ecdsa")
    run(swtpm, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", g, "-g", "sha256", "-s", s,
        "-u", "ak.pem", "-f", "pem", cwd=tmp_path)
    run(swtpm, "tpm2_flushcontext", "-t")
    sel = "sha256:0,10"
    run(swtpm, "tpm2_quote", "-c", "ak.ctx", "-l", sel, "-q", NONCE.hex(), "-m", "q.msg",
        "-s", "q.sig", "-o", "q.pcrs", "-g", "sha256", cwd=tmp_path)
    run(swtpm, "tpm2_quote", "-c", "ak.ctx", "-l", sel, "-q", NONCE.hex(), "-m", "p.msg",
        "-s", "p.sig", "-f", "plain", "-o", "p.vals", "-F", "values", "-g", "sha256",
        cwd=tmp_path)
    yaml = run(swtpm, "tpm2_pcrread", sel, "-o", "read.vals", cwd=tmp_path)
    (tmp_path / "read.yaml").write_text(yaml)
    # tpm2_pcrread's YAML holds the same values as the quote's PCR file
    from_yaml = parse_pcrread_yaml(yaml)
    from_file = read_pcr_file((tmp_path / "q.pcrs").read_bytes())
    assert from_yaml == from_file
    assert read_pcr_file((tmp_path / "read.vals").read_bytes(), selection=sel) == from_file
    plain = read_signature((tmp_path / "p.sig").read_bytes())
    assert type(plain).__name__ == "PlainSignature"
    assert type(read_signature((tmp_path / "q.sig").read_bytes())).__name__ == "Signature"

    vals = from_file.digests
    forged = {
        "forged-0-10.pcrs": (write_pcr_file(PcrSelection.from_string("sha256:0,1,2,10"),
                                            [vals[0], bytes(32), bytes(32), vals[1]]), []),
        "missing.pcrs": (write_pcr_file(PcrSelection.from_string("sha256:0"), [vals[0]]), []),
        "bank.pcrs": (write_pcr_file(PcrSelection.from_string("sha256:0,10+sha1:0"),
                                     [*vals, bytes(20)]), []),
        "changed.vals": (vals[0] + bytes(32), ["-l", sel]),
    }
    for name, (data, _) in forged.items():
        (tmp_path / name).write_bytes(data)
    checks = [("q", "q.pcrs", [], True), ("p", "p.vals", ["-l", sel], True),
              ("p", "read.vals", ["-l", sel], True), ("q", "p.vals", ["-l", sel], True)]
    checks += [(m, name, extra, False) for m in ("q", "p") for name, (_, extra) in forged.items()]
    for m, pcrs, extra, ok in checks:
        args = ["-u", str(tmp_path / "ak.pem"), "-m", str(tmp_path / f"{m}.msg"),
                "-s", str(tmp_path / f"{m}.sig"), "-f", str(tmp_path / pcrs),
                "-q", NONCE.hex(), *extra]
        tool = subprocess.run([need("tpm2_checkquote"), *args], capture_output=True, timeout=60)
        assert (tool.returncode == 0) is ok, (m, pcrs, tool.stderr)
        assert (main(["tpm", "checkquote", *args]) == 0) is ok, (m, pcrs)
    # and the YAML tpm2_pcrread printed, with the plain-signed quote
    args = ["tpm", "checkquote", "-u", str(tmp_path / "ak.pem"), "-m", str(tmp_path / "p.msg"),
            "-s", str(tmp_path / "p.sig"), "-f", str(tmp_path / "read.yaml"), "-F", "yaml",
            "-q", NONCE.hex()]
    assert main(args) == 0
