"""Appended module signature of a 1 MB module: verifications/s, vs openssl cms -verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from imasim.keys import Keyring
from imasim.sig import parse_modsig, sign_module, verify_modsig
from pki import pki


def main(quick: bool = False) -> None:
    n = 20 if quick else 200
    s = pki()["rsa_leaf"]
    payload = bytes(range(256)) * 4096  # 1 MiB
    signed = sign_module(payload, key=s.key, certificate=s.cert)
    ring = Keyring(".secondary_trusted_keys")
    ring.add(s.as_key())
    t0 = time.perf_counter()
    for _ in range(n):
        verify_modsig(signed, keyring=ring)
    dt = time.perf_counter() - t0
    print(f"verify_modsig, 1 MiB module, RSA-2048/sha256: {n / dt:,.1f} verifications/s "
          f"({len(payload) * n / dt / 1e6:,.0f} MB/s)")
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl not installed: no comparison")
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        body, sig = parse_modsig(signed)
        (tmp / "payload").write_bytes(body)
        (tmp / "sig.p7").write_bytes(sig.pkcs7)
        (tmp / "cert.pem").write_bytes(s.pem)
        m = max(5, n // 10)
        t0 = time.perf_counter()
        for _ in range(m):
            subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in",
                            str(tmp / "sig.p7"), "-content", str(tmp / "payload"), "-certfile",
                            str(tmp / "cert.pem"), "-noverify", "-out", "/dev/null"],
                           check=True, capture_output=True)
        do = time.perf_counter() - t0
        print(f"openssl cms -verify (one process per verification): {m / do:,.1f}/s")


if __name__ == "__main__":
    main()
