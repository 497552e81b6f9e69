"""A software TPM 2.0: PCR banks, localities, startup, attestation keys and quotes.

Behaviour follows the TCG reference implementation (PCR.c ``s_initAttributes``,
``PCRStartup``, ``PCRIsResetAllowed``; Quote.c; Attest_spt.c ``FillInAttestInfo``,
``SignAttestInfo``). This is the sharp layer: it signs whatever PCR state it has and
verifies nothing; :func:`imasim.tpm.verify_quote` is the verifier's side.

>>> from imasim.algorithms import HashAlgorithm as H
>>> tpm = SoftTpm()
>>> tpm.extend(10, {H.SHA256: H.SHA256.hash(b"x")})
>>> tpm.read(H.SHA256, 10).hex()[:16]
'7f85193790de75e4'
>>> tpm.read(H.SHA1, 17) == b"\\xff" * 20
True
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .._bounded import load_json_bounded
from ..algorithms import HashAlgorithm
from ..env import Clock, Entropy, FixedClock, SeededEntropy
from ..errors import ParseError, SimulationError, UsageError
from .marshal import (
    AK_ATTRIBUTES,
    NUM_PCRS,
    TPM_ALG_ECC,
    TPM_ALG_RSA,
    TPM_ECC_NIST_P256,
    Attest,
    ClockInfo,
    PcrSelection,
    PublicArea,
    Signature,
    SigScheme,
)
from .verify import _hash_cls

__all__ = ["AttestationKey", "LocalityError", "Quote", "SoftTpm"]

TPM_RH_ENDORSEMENT: Final = 0x4000000B
#: (reset localities mask, extend localities mask) per PCR, PC Client (reference PCR.c)
_PCR_ATTRS: Final[tuple[tuple[int, int], ...]] = (
    *((0x00, 0x1F),) * 16,
    (0x0F, 0x1F),  # 16 debug
    (0x10, 0x1C), (0x10, 0x1C),  # 17, 18
    (0x10, 0x0C),  # 19
    (0x14, 0x0E),  # 20
    (0x14, 0x04), (0x14, 0x04),  # 21, 22
    (0x0F, 0x1F),  # 23 application
)
_STATE_SAVED: Final = frozenset(range(16))
_FIRMWARE_VERSION: Final = 0x20240125_00000000
STATE_FORMAT: Final = "imasim-tpm-state/1"


class LocalityError(SimulationError):
    """TPM_RC_LOCALITY (0x907): the command is not allowed from this locality."""

    rc = 0x907


def _check_startup_locality(locality: int) -> None:
    """PC Client: TPM2_Startup only from locality 0 or 3 (TPM_RC_LOCALITY otherwise, as
    swtpm/libtpms answers); locality 4 reaches PCR 0 through the H-CRTM sequence."""
    if not 0 <= locality <= 4:
        raise UsageError(f"locality {locality} out of range 0..4")
    if locality not in (0, 3):
        raise LocalityError(f"TPM2_Startup is refused from locality {locality} (only 0 or 3)")


# -- keys -----------------------------------------------------------------------------
def _drbg(seed: bytes) -> Iterable[bytes]:
    counter = 0
    while True:
        yield hashlib.sha512(b"imasim-ak" + seed + counter.to_bytes(8, "big")).digest()
        counter += 1


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    # deterministic bases derived from n: reproducible, adequate for test keys
    for i in range(rounds):
        a = 2 + (int.from_bytes(hashlib.sha256(n.to_bytes(256, "big") + bytes([i])).digest(),
                                "big") % (n - 3))
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _deterministic_rsa(seed: bytes, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key whose primes come from a SHA-512 counter DRBG over ``seed`` (test keys)."""
    e = 65537
    stream = iter(_drbg(seed))

    def prime(nbits: int) -> int:
        while True:
            raw = b"".join(next(stream) for _ in range((nbits + 511) // 512))
            cand = int.from_bytes(raw, "big") >> (len(raw) * 8 - nbits)
            cand |= (3 << (nbits - 2)) | 1
            if _is_probable_prime(cand) and (cand - 1) % e:
                return cand

    p = prime(bits // 2)
    q = prime(bits // 2)
    while q == p:
        q = prime(bits // 2)
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    pub = rsa.RSAPublicNumbers(e, p * q)
    priv = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), pub)
    return priv.private_key()


@dataclass(frozen=True, slots=True)
class AttestationKey:
    """A restricted signing key with the template tpm2_createak uses (RSA-2048 or P-256)."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    public_area: PublicArea
    qualified_name: bytes

    def __repr__(self) -> str:
        from .._repr import short

        kind = "RSA-2048" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ECC P-256"
        return (f"<AttestationKey {kind} {self.public_area.scheme.name.lower()}, name "
                f"{short(self.name)}>")

    @classmethod
    def create(cls, kind: Literal["rsa", "ecc"], *, seed: bytes,
               name_alg: HashAlgorithm = HashAlgorithm.SHA256,
               scheme: SigScheme | None = None) -> AttestationKey:
        """Derive an AK from ``seed`` (the same seed always gives the same key)."""
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if kind == "rsa":
            key = _deterministic_rsa(seed)
        elif kind == "ecc":
            n = int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
            d = int.from_bytes(hashlib.sha512(b"imasim-ak-ecc" + seed).digest(), "big")
            key = ec.derive_private_key(1 + d % (n - 1), ec.SECP256R1())
        else:
            raise UsageError(f"AK kind must be 'rsa' or 'ecc', not {kind!r}")
        return cls.from_private_key(key, name_alg=name_alg, scheme=scheme)

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *,
                         name_alg: HashAlgorithm = HashAlgorithm.SHA256,
                         scheme: SigScheme | None = None,
                         scheme_hash: HashAlgorithm = HashAlgorithm.SHA256) -> AttestationKey:
        if isinstance(key, rsa.RSAPrivateKey):
            nums = key.public_key().public_numbers()
            area = PublicArea(type=TPM_ALG_RSA, name_alg=name_alg, attributes=AK_ATTRIBUTES,
                              scheme=scheme or SigScheme.RSASSA, scheme_hash=scheme_hash,
                              key_bits=key.key_size,
                              exponent=0 if nums.e == 65537 else nums.e,
                              modulus=nums.n.to_bytes(key.key_size // 8, "big"))
        else:
            if not isinstance(key.curve, ec.SECP256R1):
                raise UsageError("only NIST P-256 ECC AKs are supported")
            pn = key.public_key().public_numbers()
            area = PublicArea(type=TPM_ALG_ECC, name_alg=name_alg, attributes=AK_ATTRIBUTES,
                              scheme=scheme or SigScheme.ECDSA, scheme_hash=scheme_hash,
                              curve=TPM_ECC_NIST_P256, x=pn.x.to_bytes(32, "big"),
                              y=pn.y.to_bytes(32, "big"))
        # QN(AK) = nameAlg || H(QN(parent) || Name(AK)); the parent here is the
        # endorsement hierarchy, whose QN is its handle (TPM 2.0 Part 1, "Qualified Name").
        assert name_alg.tpm_alg_id is not None
        qn = name_alg.tpm_alg_id.to_bytes(2, "big") + name_alg.hash(
            TPM_RH_ENDORSEMENT.to_bytes(4, "big") + area.name)
        return cls(key, area, qn)

    @property
    def name(self) -> bytes:
        return self.public_area.name

    @property
    def tpm2b_public(self) -> bytes:
        return self.public_area.to_tpm2b()

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_digest(self, digest: bytes, alg: HashAlgorithm, scheme: SigScheme) -> Signature:
        """Sign a digest the TPM produced (SignAttestInfo), deterministically."""
        pre = utils.Prehashed(_hash_cls(alg))
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            if scheme is SigScheme.RSASSA:
                sig = key.sign(digest, padding.PKCS1v15(), pre)
            elif scheme is SigScheme.RSAPSS:
                # PSS salts are random by nature; the salt length is the digest length
                sig = key.sign(digest, padding.PSS(padding.MGF1(_hash_cls(alg)),
                                                   alg.digest_size), pre)
            else:
                raise UsageError(f"an RSA key cannot sign with {scheme.name}")
            return Signature(scheme=scheme, hash_alg=alg, sig=sig)
        if scheme is not SigScheme.ECDSA:
            raise UsageError(f"an ECC key cannot sign with {scheme.name}")
        der = key.sign(digest, ec.ECDSA(pre, deterministic_signing=True))
        r, s = utils.decode_dss_signature(der)
        return Signature(scheme=scheme, hash_alg=alg, r=r.to_bytes(32, "big"),
                         s=s.to_bytes(32, "big"))


@dataclass(frozen=True, slots=True)
class Quote:
    """What TPM2_Quote returns, plus the PCR values it covers (as ``tpm2_quote -o`` writes)."""

    attest: bytes
    signature: bytes
    pcr_values: tuple[tuple[HashAlgorithm, int, bytes], ...]
    selection: PcrSelection

    def __repr__(self) -> str:
        from .._repr import indices

        sel = "+".join(f"{a.kernel_name}:{indices(p)}" for a, p in self.selection.banks.items())
        return (f"<Quote of {sel}: {len(self.attest)}-byte TPMS_ATTEST, "
                f"{len(self.signature)}-byte signature>")

    def values_by_bank(self) -> dict[HashAlgorithm, dict[int, bytes]]:
        out: dict[HashAlgorithm, dict[int, bytes]] = {}
        for alg, idx, val in self.pcr_values:
            out.setdefault(alg, {})[idx] = val
        return out


class SoftTpm:
    """A TPM 2.0 with PCR banks, attestation keys and quotes (no NV, no sessions)."""

    def __init__(self, banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1,
                                                          HashAlgorithm.SHA256), *,
                 entropy: Entropy | None = None, clock: Clock | None = None,
                 startup_locality: int = 0, hcrtm_digest: bytes | None = None) -> None:
        if not banks:
            raise UsageError("a TPM needs at least one PCR bank")
        for alg in banks:
            if alg.tpm_alg_id is None or alg not in (
                    HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384,
                    HashAlgorithm.SHA512, HashAlgorithm.SM3_256):
                raise UsageError(f"{alg.kernel_name} cannot be a PCR bank")
        if len(set(banks)) != len(banks):
            raise UsageError("duplicate PCR bank")
        _check_startup_locality(startup_locality)
        self._banks: tuple[HashAlgorithm, ...] = tuple(banks)
        self._entropy = entropy if entropy is not None else SeededEntropy(b"imasim-tpm")
        self._clock = clock if clock is not None else FixedClock()
        self._epoch = self._clock.now()
        self._clock_offset_ms = 0
        self.reset_count = 0
        self.restart_count = 0
        self._startup_locality = startup_locality
        self._hcrtm = hcrtm_digest
        self._saved: dict[HashAlgorithm, list[bytes]] | None = None
        self._keys: dict[str, AttestationKey] = {}
        self._pcrs: dict[HashAlgorithm, list[bytes]] = {}
        self._startup_pcrs(range(NUM_PCRS))

    # -- PCRs -------------------------------------------------------------------------
    @property
    def banks(self) -> tuple[HashAlgorithm, ...]:
        return self._banks

    def _startup_pcrs(self, indices: range) -> None:
        """PCRStartup: 0xff..ff for PCRs resettable only from locality 4, else zero;
        PCR 0 carries the startup locality, or the H-CRTM measurement."""
        for alg in self._banks:
            vals = self._pcrs.setdefault(alg, [alg.zero] * NUM_PCRS)
            for i in indices:
                vals[i] = alg.ones if _PCR_ATTRS[i][0] & 0x10 else alg.zero
            if 0 in indices:
                if self._hcrtm is not None:
                    start = alg.zero[:-1] + b"\x04"
                    vals[0] = alg.hash(start + alg.hash(self._hcrtm))
                else:
                    vals[0] = alg.zero[:-1] + bytes([self._startup_locality])

    def read(self, alg: HashAlgorithm, index: int) -> bytes:
        self._check_index(index)
        try:
            return self._pcrs[alg][index]
        except KeyError:
            raise UsageError(f"the TPM has no {alg.kernel_name} bank") from None

    def pcr_values(self, alg: HashAlgorithm) -> tuple[bytes, ...]:
        if alg not in self._pcrs:
            raise UsageError(f"the TPM has no {alg.kernel_name} bank")
        return tuple(self._pcrs[alg])

    @staticmethod
    def _check_index(index: int) -> None:
        if not 0 <= index < NUM_PCRS:
            raise UsageError(f"PCR index {index} out of range 0..23")

    def extend(self, index: int, digests: Mapping[HashAlgorithm, bytes], *,
               locality: int = 0) -> None:
        """TPM2_PCR_Extend: each given bank's PCR = H(PCR || digest); others unchanged."""
        self._check_index(index)
        if not _PCR_ATTRS[index][1] >> locality & 1:
            raise LocalityError(f"PCR {index} cannot be extended from locality {locality}")
        for alg, digest in digests.items():
            if len(digest) != alg.digest_size:
                raise UsageError(f"{alg.kernel_name} digest must be {alg.digest_size} bytes")
        for alg, digest in digests.items():
            bank = self._pcrs.get(alg)
            if bank is not None:
                bank[index] = alg.hash(bank[index] + digest)

    def event(self, index: int, data: bytes, *, locality: int = 0) -> None:
        """TPM2_PCR_Event: hash ``data`` in every bank and extend."""
        if len(data) > 1024:
            raise UsageError("TPM2_PCR_Event takes at most 1024 bytes")
        self.extend(index, {alg: alg.hash(data) for alg in self._banks}, locality=locality)

    def reset(self, index: int, *, locality: int = 0) -> None:
        """TPM2_PCR_Reset: all banks of the PCR to zero, if the locality may reset it."""
        self._check_index(index)
        if not _PCR_ATTRS[index][0] >> locality & 1 or locality == 4:
            raise LocalityError(f"PCR {index} cannot be reset from locality {locality}")
        for alg in self._banks:
            self._pcrs[alg][index] = alg.zero

    # -- lifecycle --------------------------------------------------------------------
    def shutdown(self, *, state: bool = False) -> None:
        """TPM2_Shutdown(CLEAR or STATE); STATE saves PCRs 0-15 (the PC Client profile's
        pcrSave set) for a later Startup(STATE)."""
        self._saved = {alg: list(v) for alg, v in self._pcrs.items()} if state else None

    def shutdown_state(self) -> None:
        """TPM2_Shutdown(STATE): save PCRs 0-15 for a later resume."""
        self.shutdown(state=True)

    def startup(self, *, state: bool = False, locality: int | None = None) -> None:
        """_TPM_Init then TPM2_Startup (Part 1, "TPM Operational States").

        Startup(CLEAR) after Shutdown(STATE) is a TPM Restart (restartCount + 1), else a
        TPM Reset (resetCount + 1, restartCount 0); either re-initialises every PCR, PCR 0
        from the startup ``locality``. Startup(STATE) after Shutdown(STATE) is a TPM
        Resume: PCRs 0-15 restored, 16-23 re-initialised, restartCount + 1; without a
        Shutdown(STATE) the TPM refuses it (TPM_RC_VALUE) and nothing changes.
        """
        if locality is not None:
            _check_startup_locality(locality)
        saved = self._saved
        if state and saved is None:
            raise SimulationError("Startup(STATE) without a Shutdown(STATE) (TPM_RC_VALUE)")
        if locality is not None:
            self._startup_locality = locality
        self._saved = None
        if state:
            assert saved is not None
            self.restart_count += 1
            self._startup_pcrs(range(16, NUM_PCRS))
            for alg in self._banks:
                for i in _STATE_SAVED:
                    self._pcrs[alg][i] = saved[alg][i]
            return
        if saved is not None:
            self.restart_count += 1
        else:
            self.reset_count += 1
            self.restart_count = 0
        self._startup_pcrs(range(NUM_PCRS))

    def power_cycle(self) -> None:
        """_TPM_Init + Startup(CLEAR): a TPM Reset, or a TPM Restart when the OS had
        done a Shutdown(STATE)."""
        self.startup()

    def resume(self) -> None:
        """Shutdown(STATE) + Startup(STATE): TPM Resume; PCRs 0-15 restored."""
        self.startup(state=True)

    def soft_reboot(self) -> None:
        """A kexec or soft reboot: the TPM sees no _TPM_Init and keeps every PCR."""

    # -- clock ------------------------------------------------------------------------
    @property
    def clock_ms(self) -> int:
        return self._clock_offset_ms + int((self._clock.now() - self._epoch) * 1000)

    # -- keys and quotes --------------------------------------------------------------
    def create_ak(self, kind: Literal["rsa", "ecc"] = "rsa", *, seed: bytes | None = None,
                  scheme: SigScheme | None = None, handle: str | None = None
                  ) -> AttestationKey:
        """Create an AK (from ``seed``, or from the TPM's entropy) and keep it."""
        ak = AttestationKey.create(kind, seed=seed if seed is not None
                                   else self._entropy.random_bytes(32), scheme=scheme)
        self._keys[handle or ak.name.hex()] = ak
        return ak

    @property
    def keys(self) -> dict[str, AttestationKey]:
        return dict(self._keys)

    def quote(self, ak: AttestationKey, selection: PcrSelection | Mapping[
            HashAlgorithm, Sequence[int]], nonce: bytes = b"", *,
              scheme: SigScheme | None = None,
              hash_alg: HashAlgorithm | None = None) -> Quote:
        """TPM2_Quote: attest to the selected PCRs, qualified by ``nonce``.

        ``scheme``/``hash_alg`` may only name the AK's own (TPM_RC_SCHEME otherwise, as a
        TPM refuses another scheme for a key that has one: CryptSelectSignScheme).
        """
        if len(nonce) > 64:
            raise UsageError("qualifyingData is at most 64 bytes")
        sel = selection if isinstance(selection, PcrSelection) else PcrSelection(selection)
        # banks the TPM lacks are dropped from the selection before hashing (PCR.c)
        sel = PcrSelection([(a, p) for a, p in sel.items() if a in self._pcrs],
                           sel.size_of_select)
        # CryptSelectSignScheme: a key with a scheme signs only with that scheme and hash
        if scheme not in (None, ak.public_area.scheme) or hash_alg not in (
                None, ak.public_area.scheme_hash):
            raise UsageError(
                f"TPM_RC_SCHEME: the AK signs with {ak.public_area.scheme.name}-"
                f"{ak.public_area.scheme_hash.kernel_name} only")
        scheme = ak.public_area.scheme
        halg = ak.public_area.scheme_hash
        values = tuple((alg, i, self._pcrs[alg][i]) for alg, idx in sel.items() for i in idx)
        pcr_digest = halg.hash(b"".join(v for _, _, v in values))
        attest = Attest(qualified_signer=ak.qualified_name, extra_data=nonce,
                        clock_info=ClockInfo(clock=self.clock_ms, reset_count=self.reset_count,
                                             restart_count=self.restart_count, safe=True),
                        firmware_version=_FIRMWARE_VERSION, pcr_select=sel,
                        pcr_digest=pcr_digest).to_bytes()
        sig = ak.sign_digest(halg.hash(attest), halg, scheme)
        return Quote(attest=attest, signature=sig.to_bytes(), pcr_values=values, selection=sel)

    # -- state ------------------------------------------------------------------------
    def to_json(self) -> str:
        """The whole state (banks, counters, clock, keys) as the documented JSON format."""
        keys = {}
        for handle, ak in self._keys.items():
            keys[handle] = {
                "kind": "rsa" if isinstance(ak.private_key, rsa.RSAPrivateKey) else "ecc",
                "scheme": ak.public_area.scheme.name,
                "private_key_pkcs8": base64.b64encode(ak.private_key.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption())).decode(),
            }
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "banks": [a.kernel_name for a in self._banks],
            "pcrs": {a.kernel_name: [v.hex() for v in self._pcrs[a]] for a in self._banks},
            "reset_count": self.reset_count,
            "restart_count": self.restart_count,
            "clock_ms": self.clock_ms,
            "startup_locality": self._startup_locality,
            "saved_state": None if self._saved is None else {
                a.kernel_name: [v.hex() for v in vals] for a, vals in self._saved.items()},
            "keys": keys,
        }
        return json.dumps(state, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, clock: Clock | None = None,
                  entropy: Entropy | None = None) -> SoftTpm:
        try:
            state = load_json_bounded(text, what="TPM state")
            if not isinstance(state, dict):
                raise ParseError("a TPM state is a JSON object", field="format")
            if state.get("format") != STATE_FORMAT:
                raise ParseError("not an imasim TPM state", field="format",
                                 expected=STATE_FORMAT, actual=state.get("format"))
            banks = [HashAlgorithm.from_name(b) for b in state["banks"]]
            tpm = cls(banks, clock=clock, entropy=entropy,
                      startup_locality=int(state["startup_locality"]))
            for alg in banks:
                vals = [bytes.fromhex(v) for v in state["pcrs"][alg.kernel_name]]
                if len(vals) != NUM_PCRS or any(len(v) != alg.digest_size for v in vals):
                    raise ParseError("bad PCR values", field=f"pcrs.{alg.kernel_name}")
                tpm._pcrs[alg] = vals
            for name in ("reset_count", "restart_count", "clock_ms"):
                if int(state[name]) < 0:
                    raise ParseError("negative counter", field=name)
            tpm.reset_count = int(state["reset_count"])
            tpm.restart_count = int(state["restart_count"])
            tpm._clock_offset_ms = int(state["clock_ms"])
            saved = state.get("saved_state")
            if saved is not None:
                tpm._saved = {HashAlgorithm.from_name(a): [bytes.fromhex(v) for v in vals]
                              for a, vals in saved.items()}
                if set(tpm._saved) != set(banks) or any(
                        len(vals) != NUM_PCRS or any(len(v) != alg.digest_size for v in vals)
                        for alg, vals in tpm._saved.items()):
                    raise ParseError("bad saved PCR values", field="saved_state")
            for handle, k in state["keys"].items():
                key = serialization.load_der_private_key(
                    base64.b64decode(k["private_key_pkcs8"]), None)
                if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                    raise ParseError("unsupported key type", field=f"keys.{handle}")
                tpm._keys[handle] = AttestationKey.from_private_key(
                    key, scheme=SigScheme[k["scheme"]])
            return tpm
        except ParseError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, UnsupportedAlgorithm,
                LocalityError) as exc:
            raise ParseError(f"bad TPM state file: {exc!r}", field="state") from None

    def __repr__(self) -> str:
        banks = ",".join(a.kernel_name for a in self._banks)
        return f"<SoftTpm banks={banks} resetCount={self.reset_count}>"

    def _repr_html_(self) -> str:
        """Every PCR of every bank, for notebooks."""
        from .._html import soft_tpm

        return soft_tpm(self)
