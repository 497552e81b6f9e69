"""imasim's TPM against swtpm driven command by command: localities, startup, resume.

tpm2-tools cannot choose a locality (the TCTI sends every command from locality 0), so
these tests speak to swtpm directly: TPM 2.0 commands on its data socket, and its control
channel (swtpm_ioctls(3): CMD_INIT, CMD_SET_LOCALITY, CMD_HASH_*) for _TPM_Init, the
locality and the H-CRTM sequence. Every outcome (allowed or TPM_RC_LOCALITY) and every PCR
of every bank is compared with imasim's SoftTpm.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import SimulationError
from imasim.tpm import SoftTpm
from imasim.tpm.soft_tpm import LocalityError
from tools import need

pytestmark = pytest.mark.interop

BANKS = (H.SHA1, H.SHA256, H.SHA384, H.SHA512)  # what a fresh swtpm allocates
TPM_RC_SUCCESS, TPM_RC_LOCALITY = 0, 0x907
CMD_INIT, CMD_SET_LOCALITY, CMD_HASH_START, CMD_HASH_DATA, CMD_HASH_END = 2, 5, 6, 7, 8
#: a password session with an empty password (TPM_RS_PW): the authorization of PCR handles
PW_SESSION = struct.pack(">IIHBH", 9, 0x40000009, 0, 0, 0)


class RawSwtpm:
    def __init__(self, port: int) -> None:
        self.port = port

    def _exchange(self, port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if port == self.port and len(out) >= 6 and \
                        len(out) >= struct.unpack(">I", out[2:6])[0]:
                    break
                if port != self.port and len(out) >= 4:
                    break
            return out

    def ctrl(self, cmd: int, payload: bytes = b"") -> None:
        res = self._exchange(self.port + 1, struct.pack(">I", cmd) + payload)
        assert struct.unpack(">I", res[:4])[0] == 0, (cmd, res.hex())

    def command(self, cc: int, body: bytes = b"", *, sessions: bool = False) -> tuple[int, bytes]:
        tag = 0x8002 if sessions else 0x8001
        res = self._exchange(self.port, struct.pack(">HII", tag, 10 + len(body), cc) + body)
        return struct.unpack(">I", res[6:10])[0], res[10:]

    # what the tests use
    def init(self) -> None:
        self.ctrl(CMD_INIT, struct.pack(">I", 0))

    def locality(self, loc: int) -> None:
        self.ctrl(CMD_SET_LOCALITY, bytes([loc]))

    def startup(self, state: bool = False) -> int:
        return self.command(0x144, struct.pack(">H", int(state)))[0]

    def shutdown(self, state: bool = False) -> int:
        return self.command(0x145, struct.pack(">H", int(state)))[0]

    def reset(self, pcr: int) -> int:
        return self.command(0x13D, struct.pack(">I", pcr) + PW_SESSION, sessions=True)[0]

    def extend(self, pcr: int, digests: dict[H, bytes]) -> int:
        body = struct.pack(">I", pcr) + PW_SESSION + struct.pack(">I", len(digests))
        for alg, d in digests.items():
            assert alg.tpm_alg_id is not None
            body += struct.pack(">H", alg.tpm_alg_id) + d
        return self.command(0x182, body, sessions=True)[0]

    def read(self, alg: H) -> list[bytes]:
        """TPM2_PCR_Read, eight PCRs a call (what a PCR_Read returns at most)."""
        assert alg.tpm_alg_id is not None
        out: list[bytes] = []
        for first in range(0, 24, 8):
            select = bytes([0xFF if i == first // 8 else 0 for i in range(3)])
            rc, body = self.command(0x17E, struct.pack(">IHB", 1, alg.tpm_alg_id, 3) + select)
            assert rc == 0, hex(rc)
            pos = 4 + 4 + 2 + 1 + 3  # updateCounter, TPML_PCR_SELECTION (one)
            (count,) = struct.unpack_from(">I", body, pos)
            pos += 4
            for _ in range(count):
                (size,) = struct.unpack_from(">H", body, pos)
                out.append(body[pos + 2:pos + 2 + size])
                pos += 2 + size
        return out

    def counters(self) -> tuple[int, int]:
        rc, body = self.command(0x181)  # TPM2_ReadClock: TPMS_TIME_INFO
        assert rc == 0, hex(rc)
        _time, _clock, reset, restart = struct.unpack_from(">QQII", body)
        return reset, restart


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[RawSwtpm]:
    binary = need("swtpm")
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
             "--tpmstate", f"dir={tmp_path}", "--flags", "not-need-init"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("swtpm did not start")
    try:
        yield RawSwtpm(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def assert_same_pcrs(real: RawSwtpm, ours: SoftTpm) -> None:
    for alg in BANKS:
        assert real.read(alg) == list(ours.pcr_values(alg)), alg


@pytest.mark.parametrize("loc", [0, 1, 2, 3, 4])
def test_startup_locality_sets_pcr0(swtpm: RawSwtpm, loc: int) -> None:
    swtpm.locality(loc)
    if loc not in (0, 3):  # PC Client: Startup only from locality 0 or 3
        assert swtpm.startup() == TPM_RC_LOCALITY
        with pytest.raises(LocalityError):
            SoftTpm(BANKS, startup_locality=loc)
        ours = SoftTpm(BANKS)
        ours.shutdown(state=True)
        before = ours.to_json()
        with pytest.raises(LocalityError):
            ours.startup(locality=loc)
        assert ours.to_json() == before  # a refused Startup changes nothing
        return
    assert swtpm.startup() == TPM_RC_SUCCESS
    assert_same_pcrs(swtpm, SoftTpm(BANKS, startup_locality=loc))


def test_hcrtm_sequence_sets_pcr0(swtpm: RawSwtpm) -> None:
    """_TPM_Hash_Start/Data/End before Startup: PCR 0 = H(0..04 || H(data)) per bank."""
    data = b"imasim H-CRTM event"
    swtpm.ctrl(CMD_HASH_START)
    swtpm.ctrl(CMD_HASH_DATA, struct.pack(">I", len(data)) + data)
    swtpm.ctrl(CMD_HASH_END)
    assert swtpm.startup() == TPM_RC_SUCCESS
    assert_same_pcrs(swtpm, SoftTpm(BANKS, hcrtm_digest=data))


def test_reset_and_extend_locality_rules(swtpm: RawSwtpm) -> None:
    """Every PCR from every locality: allowed or TPM_RC_LOCALITY as swtpm decides."""
    assert swtpm.startup() == TPM_RC_SUCCESS
    ours = SoftTpm(BANKS)
    for loc in range(5):
        swtpm.locality(loc)
        for pcr in range(24):
            digests = {a: a.hash(bytes([loc, pcr])) for a in BANKS}
            rc = swtpm.extend(pcr, digests)
            try:
                ours.extend(pcr, digests, locality=loc)
                assert rc == TPM_RC_SUCCESS, (pcr, loc, hex(rc))
            except LocalityError:
                assert rc == TPM_RC_LOCALITY, (pcr, loc, hex(rc))
        for pcr in range(24):
            rc = swtpm.reset(pcr)
            try:
                ours.reset(pcr, locality=loc)
                assert rc == TPM_RC_SUCCESS, (pcr, loc, hex(rc))
            except LocalityError:
                assert rc == TPM_RC_LOCALITY, (pcr, loc, hex(rc))
    swtpm.locality(0)
    assert_same_pcrs(swtpm, ours)


def test_reset_restart_resume_and_counters(swtpm: RawSwtpm) -> None:
    assert swtpm.startup() == TPM_RC_SUCCESS
    ours = SoftTpm(BANKS)
    base_reset, _ = swtpm.counters()  # a fresh swtpm and SoftTpm both start at 0 restarts

    def extend_all() -> None:
        for pcr in (0, 7, 10, 16, 23):
            digests = {a: a.hash(b"%d" % pcr) for a in BANKS}
            assert swtpm.extend(pcr, digests) == TPM_RC_SUCCESS
            ours.extend(pcr, digests)

    def check() -> None:
        assert_same_pcrs(swtpm, ours)
        reset, restart = swtpm.counters()
        assert (reset - base_reset, restart) == (ours.reset_count, ours.restart_count)

    extend_all()
    # TPM Resume: Shutdown(STATE), _TPM_Init, Startup(STATE)
    assert swtpm.shutdown(state=True) == TPM_RC_SUCCESS
    swtpm.init()
    assert swtpm.startup(state=True) == TPM_RC_SUCCESS
    ours.shutdown(state=True)
    ours.startup(state=True)
    check()
    # TPM Restart: Shutdown(STATE), _TPM_Init, Startup(CLEAR)
    extend_all()
    assert swtpm.shutdown(state=True) == TPM_RC_SUCCESS
    swtpm.init()
    assert swtpm.startup() == TPM_RC_SUCCESS
    ours.shutdown(state=True)
    ours.startup()
    check()
    # TPM Reset without an orderly shutdown (power lost)
    extend_all()
    swtpm.init()
    assert swtpm.startup() == TPM_RC_SUCCESS
    ours.power_cycle()
    check()
    # Startup(STATE) without Shutdown(STATE) is refused (TPM_RC_VALUE, parameter 1)
    extend_all()
    swtpm.init()
    assert swtpm.startup(state=True) == 0x1C4
    with pytest.raises(SimulationError):
        ours.startup(state=True)
    assert swtpm.startup() == TPM_RC_SUCCESS
    ours.startup()
    check()
    # a kexec: no _TPM_Init, no Startup: nothing changes
    extend_all()
    ours.soft_reboot()
    check()
