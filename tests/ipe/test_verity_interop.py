"""The digests IPE compares, against the real tools: `fsverity digest`, `fsverity sign`
(fsverity-utils) and `veritysetup format` (cryptsetup)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError
from imasim.ipe import dm_verity_root_hash, fsverity_digest, verify_fsverity_signature
from imasim.keys import Keyring
from pki import pki
from tools import need


def _data(n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(str(i).encode()).digest()
        i += 1
    return out[:n]


@pytest.mark.interop
@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 128 * 4096 + 1, 600_000])
@pytest.mark.parametrize("alg", [H.SHA256, H.SHA512])
def test_fsverity_digest_equals_fsverity_utils(size: int, alg: H, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(_data(size))
    out = subprocess.run([need("fsverity"), "digest", f"--hash-alg={alg.kernel_name}", str(f)],
                         capture_output=True, text=True, check=True).stdout
    name, digest = fsverity_digest(f.read_bytes(), alg)
    assert out.split()[0] == f"{name}:{digest.hex()}"


@pytest.mark.interop
def test_fsverity_sign_signature_verifies_in_imasim(tmp_path: Path) -> None:
    leaf = pki()["rsa_leaf"]
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    (tmp_path / "cert.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    data = _data(10_000)
    (tmp_path / "f").write_bytes(data)
    subprocess.run([need("fsverity"), "sign", "f", "f.sig", "--key=key.pem", "--cert=cert.pem"],
                   cwd=tmp_path, check=True, capture_output=True)
    sig = (tmp_path / "f.sig").read_bytes()
    ring = Keyring(".fs-verity")
    ring.add(leaf.as_key())
    assert verify_fsverity_signature(data, sig, ring) == leaf.as_key()
    with pytest.raises(ImasimError):
        verify_fsverity_signature(data + b"!", sig, ring)


@pytest.mark.interop
@pytest.mark.parametrize("blocks", [1, 2, 129, 300])
def test_dm_verity_root_hash_equals_veritysetup(blocks: int, tmp_path: Path) -> None:
    data = _data(blocks * 4096)
    salt = bytes(range(32))
    (tmp_path / "data.img").write_bytes(data)
    out = subprocess.run([need("veritysetup"), "format", "data.img", "hash.img",
                          f"--salt={salt.hex()}"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"Root hash:\s+([0-9a-f]+)", out)
    assert m is not None
    assert dm_verity_root_hash(data, salt=salt).hex() == m.group(1)
