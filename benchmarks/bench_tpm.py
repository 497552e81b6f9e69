"""Software TPM: extends/s per bank set, quotes/s for RSA and ECC AKs."""

from __future__ import annotations

import time

from _mem import peak_rss_mb

from imasim.algorithms import HashAlgorithm as H
from imasim.tpm import PcrSelection, SoftTpm, verify_quote


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 200_000
    for banks in ((H.SHA1, H.SHA256), (H.SHA1, H.SHA256, H.SHA384, H.SHA512)):
        tpm = SoftTpm(banks)
        digests = {a: a.hash(b"x") for a in banks}
        t0 = time.perf_counter()
        for _ in range(n):
            tpm.extend(10, digests)
        dt = time.perf_counter() - t0
        print(f"extend into {'+'.join(a.kernel_name for a in banks)}: {n / dt:,.0f} extends/s")
    q_n = 200 if quick else 2000
    for kind in ("rsa", "ecc"):
        tpm = SoftTpm()
        ak = tpm.create_ak(kind, seed=b"bench")  # type: ignore[arg-type]
        sel = PcrSelection({H.SHA256: range(11)})
        t0 = time.perf_counter()
        for i in range(q_n):
            q = tpm.quote(ak, sel, i.to_bytes(8, "big"))
        dt = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(q_n):
            verify_quote(q.attest, q.signature, ak.public_pem, nonce=(q_n - 1).to_bytes(8, "big"),
                         pcr_values=q.values_by_bank())
        dv = time.perf_counter() - t0
        print(f"{kind} quote: {q_n / dt:,.0f} quotes/s, verify_quote: {q_n / dv:,.0f}/s")
    rss = peak_rss_mb("from imasim.tpm import SoftTpm\nt = SoftTpm()\n"
                      "a = t.create_ak('ecc', seed=b'x')\n"
                      "[t.quote(a, {t.banks[1]: range(24)}, b'n') for _ in range(100)]")
    print(f"peak RSS of a TPM making 100 quotes: {rss:.1f} MB")


if __name__ == "__main__":
    main()
