"""Scenario files: a machine, its keys and files, and a sequence of actions, run on a
simulated kernel; what ``imasim boot SCENARIO -o DIR`` executes.

A scenario is a TOML or JSON document (parsed here from text; files it names are read
through a callback, so the core stays sans-I/O)::

    [machine]
    preset = "generic-6.1-ima-kexec"      # a kconfig preset (imasim.kconfig.PRESETS)
    cmdline = "ima_policy=tcb ima_appraise=enforce"
    banks = ["sha1", "sha256"]
    builtin_keys = ["ca"]                # keys compiled into .builtin_trusted_keys
    secure_boot = false
    config = { kexec_sig_force = true }  # Kconfig overrides (KernelConfig field names)

    [keys.ca]                            # deterministic P-256 test keys, by name
    ca = true
    [keys.vendor]
    issuer = "ca"

    [[files]]
    path = "/usr/bin/app"
    content = "app v1"                   # or content_hex, or source = "relative/file"
    ima_sign = "vendor"                  # security.ima signature (evmctl ima_sign)
    # also: ima_hash = true, modsig = "key", pe_sign = "key", mode, uid, gid, fs

    [[actions]]
    op = "exec"
    path = "/usr/bin/app"
    expect = "allow"                     # or "deny"; the run fails when it differs

Actions (``op``): ``boot`` (done first automatically unless the first action is one),
``load_policy`` (``text``), ``add_key`` (``keyring``, ``key``), ``exec``, ``mmap``,
``open`` (``write = true`` for write access), ``close``, ``read_file``, ``write_file``
(``content``), ``load_module``, ``load_firmware``, ``kexec_load`` (``kernel``,
``initrd``, ``cmdline``), ``kexec_execute`` (``cmdline``), ``power_cycle``,
``critical_data`` (``label``, ``name``, ``content``), ``blacklist`` (``path`` for its
sha256 ``bin:`` hash, or ``key`` for its ``tbs:`` hash), ``unpack_initramfs`` and
``extract_tar`` (``files``: a list of file tables, packed into a cpio or pax tar first),
``quote`` (``nonce`` hex, ``pcrs`` like ``"sha256:0-10"``: the quote files
``tpm2_checkquote`` reads), and what a verifier sees as allow/deny: ``replay`` (the list
replays to the PCRs), ``measured`` (``name``: an entry of that name is in the list),
``boot_aggregate`` (``digest``: the list's boot_aggregate, hex).

>>> s = parse_scenario('''
... [machine]
... cmdline = "ima_policy=tcb"
... [[files]]
... path = "/bin/true"
... content = "true"
... [[actions]]
... op = "exec"
... path = "/bin/true"
... expect = "allow"
... ''')
>>> run = run_scenario(s)
>>> run.ok, [e.event_name for e in run.machine.measurements]
(True, ['boot_aggregate', '/bin/true'])
>>> sorted(run.artifacts)[:3]
['ascii_runtime_measurements', 'audit.log', 'binary_runtime_measurements']
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from .algorithms import HashAlgorithm
from .archive import ArchiveMember, write_cpio, write_tar
from .env import SeededEntropy
from .errors import ImasimError, ParseError, UsageError
from .ima.policy import MAY_READ, MAY_WRITE
from .ima.replay import MatchStatus, match
from .ipe.verity import sign_fsverity
from .kconfig import PRESETS, KernelConfig
from .keys.generate import derive_ec_key, make_certificate
from .keys.key import Key
from .machine import EXT4, PROC, RAMFS, TMPFS, AccessResult, Machine
from .sig.authenticode import sign_pe
from .sig.modsig import sign_module
from .sig.pefile import build_pe
from .sig.pkcs7 import sign_pkcs7
from .sig.xattr import XattrKind, sign_xattr
from .tpm.marshal import PcrSelection
from .tpm.verify import write_pcr_file

__all__ = ["ActionResult", "Scenario", "ScenarioRun", "parse_scenario", "run_scenario"]

_FS: Final = {"ext4": EXT4, "tmpfs": TMPFS, "ramfs": RAMFS, "proc": PROC}
_ACCESS: Final = frozenset({"exec", "mmap", "open", "read_file", "load_module",
                            "load_firmware", "kexec_load"})
_OPS: Final = _ACCESS | {"boot", "load_policy", "add_key", "close", "write_file",
                         "kexec_execute", "power_cycle", "critical_data", "blacklist",
                         "unpack_initramfs", "extract_tar", "quote", "mount_dm_verity",
                         "enable_fsverity", "ipe_load_policy", "ipe_activate",
                         "ipe_enforce", "replay", "measured", "boot_aggregate"}


def _bad(message: str, where: str) -> ParseError:
    return ParseError(message, field=where)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario document (``data``) and the reader for files it names."""

    data: Mapping[str, Any]
    read: Callable[[str], bytes] | None = None


def parse_scenario(text: str, *, fmt: str = "toml",
                   read: Callable[[str], bytes] | None = None) -> Scenario:
    """Parse and validate a scenario (``fmt`` is ``"toml"`` or ``"json"``); errors are
    ParseError naming the table and key (TOML syntax errors carry the line)."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ParseError(f"TOML: {exc}", line=int(m.group(1)) if m else None) from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"JSON: {exc.msg}", line=exc.lineno, offset=exc.pos) from None
    if not isinstance(data, dict):
        raise _bad("a scenario is a table", "scenario")
    _validate(data)
    return Scenario(data, read)


def _validate(data: Mapping[str, Any]) -> None:
    unknown = set(data) - {"machine", "keys", "files", "actions", "name", "description"}
    if unknown:
        raise _bad(f"unknown top-level key(s) {sorted(unknown)}", "scenario")
    machine = data.get("machine", {})
    if not isinstance(machine, dict):
        raise _bad("must be a table", "machine")
    if machine.get("preset", "generic-6.1-ima-kexec") not in PRESETS:
        raise _bad(f"unknown preset {machine.get('preset')!r}; one of {sorted(PRESETS)}",
                   "machine.preset")
    known = {f.name for f in fields(KernelConfig)}
    for k in machine.get("config", {}):
        if k not in known:
            raise _bad(f"unknown Kconfig switch {k!r}", "machine.config")
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, dict) for v in keys.values()):
        raise _bad("must be a table of tables", "keys")
    for name, spec in keys.items():
        if spec.get("issuer") is not None and spec["issuer"] not in keys:
            raise _bad(f"issuer {spec['issuer']!r} is not a key", f"keys.{name}.issuer")
    for i, f in enumerate(data.get("files", [])):
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or \
                not f["path"].startswith("/"):
            raise _bad("each file needs an absolute path", f"files[{i}]")
        for k in ("ima_sign", "modsig", "pe_sign", "certificate"):
            if k in f and f[k] not in keys:
                raise _bad(f"{k} names an unknown key {f[k]!r}", f"files[{i}].{k}")
        if "fs" in f and f["fs"] not in _FS:
            raise _bad(f"unknown file system {f['fs']!r}", f"files[{i}].fs")
    for i, a in enumerate(data.get("actions", [])):
        if not isinstance(a, dict) or a.get("op") not in _OPS:
            raise _bad(f"unknown op {a.get('op') if isinstance(a, dict) else a!r}; one of "
                       f"{sorted(_OPS)}", f"actions[{i}].op")
        if a.get("expect") not in (None, "allow", "deny", "error"):
            raise _bad("expect is allow, deny or error", f"actions[{i}].expect")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one action did: ``outcome`` is allow, deny, ok or error."""

    index: int
    op: str
    target: str
    outcome: str
    reason: str = ""
    expect: str | None = None

    @property
    def ok(self) -> bool:
        if self.expect is None:
            return self.outcome != "error"
        return self.outcome == self.expect or (self.expect == "allow" and self.outcome == "ok")


@dataclass
class ScenarioRun:
    """A finished run: the machine, each action's result, and the files to write."""

    machine: Machine
    results: list[ActionResult] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": len(self.machine.measurements),
                "actions": [{"index": r.index, "op": r.op, "target": r.target,
                             "outcome": r.outcome, "reason": r.reason, "expect": r.expect,
                             "ok": r.ok} for r in self.results],
                "lost_measurements": [e.event_name for e in self.machine.lost_measurements],
                "artifacts": sorted(self.artifacts)}


class _Runner:
    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.data = s.data
        self._keys: dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]] = {}
        self.roothashes: dict[str, bytes] = {}
        for name in self.data.get("keys", {}):
            self._key(name, ())

    def _key(self, name: str, seen: tuple[str, ...]
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if name in self._keys:
            return self._keys[name]
        if name in seen:
            raise _bad(f"issuer cycle through {name!r}", f"keys.{name}.issuer")
        spec = self.data["keys"][name]
        issuer = self._key(spec["issuer"], (*seen, name)) if spec.get("issuer") else None
        scenario = self.data.get("name", "scenario")
        key = derive_ec_key(f"{scenario}:{spec.get('seed', name)}")
        cert = make_certificate(spec.get("cn", name), key,
                                issuer=(issuer[1], issuer[0]) if issuer else None,
                                ca=bool(spec.get("ca", False)))
        self._keys[name] = (key, cert)
        return self._keys[name]

    def keys(self, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if name not in self._keys:
            raise UsageError(f"unknown key {name!r}")
        return self._keys[name]

    def kernel_key(self, name: str) -> Key:
        if name not in self._keys:
            raise UsageError(f"unknown key {name!r}")
        return Key.from_certificate(self._keys[name][1].public_bytes(Encoding.DER))

    def content(self, spec: Mapping[str, Any], where: str) -> bytes:
        if "content" in spec:
            text = str(spec["content"])
            for name, root in self.roothashes.items():  # {{roothash:NAME}} of a volume
                text = text.replace("{{roothash:" + name + "}}", "sha256:" + root.hex())
            return text.encode()
        if "content_hex" in spec:
            try:
                return bytes.fromhex(spec["content_hex"])
            except ValueError:
                raise _bad("not hexadecimal", f"{where}.content_hex") from None
        if "source" in spec:
            if self.s.read is None:
                raise UsageError(f"{where}: source files need a reader")
            return self.s.read(spec["source"])
        if "certificate" in spec:  # a key's X.509 certificate (DER), e.g. for IMA_X509_PATH
            der = self.kernel_key(str(spec["certificate"])).der
            if der is None:
                raise _bad("the key has no certificate", f"{where}.certificate")
            return der
        return b""

    def file(self, spec: Mapping[str, Any], where: str) -> tuple[bytes, dict[str, bytes]]:
        """The file's final bytes (signed as asked) and its security xattrs."""
        data = self.content(spec, where)
        if "pe_sign" in spec:
            key, cert = self._keys[spec["pe_sign"]]
            data = sign_pe(build_pe(data), key=key, certificate=cert)
        if "modsig" in spec:
            key, cert = self._keys[spec["modsig"]]
            data = sign_module(data, key=key, certificate=cert)
        xattrs: dict[str, bytes] = {}
        if "ima_sign" in spec:
            key, _ = self._keys[spec["ima_sign"]]
            kid = self.kernel_key(spec["ima_sign"]).key_id_v2
            xattrs["security.ima"] = sign_xattr(HashAlgorithm.SHA256.hash(data), key=key,
                                                keyid=kid)
        elif spec.get("ima_hash"):
            xattrs["security.ima"] = bytes([XattrKind.DIGEST_NG,
                                            HashAlgorithm.SHA256.hash_algo]) + \
                HashAlgorithm.SHA256.hash(data)
        if "selinux" in spec:  # the file's LSM context, for obj_* rules
            xattrs["security.selinux"] = str(spec["selinux"]).encode() + b"\0"
        return data, xattrs

    def machine(self) -> Machine:
        spec = self.data.get("machine", {})
        cfg = PRESETS[spec.get("preset", "generic-6.1-ima-kexec")]
        if spec.get("config"):  # TOML arrays are lists; KernelConfig wants tuples
            cfg = cfg.with_(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in spec["config"].items()})
        try:
            banks = [HashAlgorithm.from_name(b) for b in spec.get("banks", ["sha1", "sha256"])]
        except ImasimError as exc:
            raise _bad(str(exc), "machine.banks") from None
        m = Machine.create(config=cfg, cmdline=spec.get("cmdline", "ima_policy=tcb"),
                           banks=banks, secure_boot=bool(spec.get("secure_boot", False)),
                           builtin_keys=[self.kernel_key(k)
                                         for k in spec.get("builtin_keys", [])],
                           entropy=SeededEntropy(str(spec.get("seed", "scenario")).encode()))
        if "ipe_boot_policy" in spec or spec.get("ipe"):
            m.enable_ipe(spec.get("ipe_boot_policy"), unsigned_policy_by_rule=bool(
                spec.get("ipe_unsigned_policy_by_rule", False)))
        for k in spec.get("secondary_keys", []):
            m.keyrings.secondary.add(self.kernel_key(k))
        return m

    def signed_policy(self, a: Mapping[str, Any], where: str) -> bytes:
        """An IPE policy text, PKCS#7-signed with attached content when ``signed_by``."""
        text = self.content(a, where)
        if "signed_by" not in a:
            return text
        key, cert = self._keys[a["signed_by"]]
        return sign_pkcs7(text, key=key, certificate=cert, detached=False,
                          include_certificate=True)

    def members(self, a: Mapping[str, Any], where: str) -> list[ArchiveMember]:
        out = []
        for j, f in enumerate(a.get("files", [])):
            data, xattrs = self.file(f, f"{where}.files[{j}]")
            out.append(ArchiveMember(f["path"].lstrip("/"), data, 0o100000 |
                                     int(f.get("mode", 0o755)), int(f.get("uid", 0)),
                                     int(f.get("gid", 0)), 0, tuple(xattrs.items())))
        return out


def run_scenario(s: Scenario) -> ScenarioRun:
    """Run every action in order; an action that raises an imasim error is recorded as
    ``error`` (and the run goes on), so a scenario can expect failures."""
    r = _Runner(s)
    m = r.machine()
    run = ScenarioRun(m)
    for i, f in enumerate(s.data.get("files", [])):
        data, xattrs = r.file(f, f"files[{i}]")
        m.add_file(f["path"], data, uid=int(f.get("uid", 0)), gid=int(f.get("gid", 0)),
                   mode=0o100000 | int(f.get("mode", 0o755)), xattrs=xattrs,
                   fs=_FS[f.get("fs", "ext4")])
    actions: Sequence[Mapping[str, Any]] = s.data.get("actions", [])
    if not actions or actions[0].get("op") != "boot":
        m.boot()
    for i, a in enumerate(actions):
        run.results.append(_act(r, m, run, i, a))
    lst = m.measurements
    run.artifacts.update({
        "binary_runtime_measurements": lst.to_bytes(),
        "ascii_runtime_measurements": lst.to_ascii().encode(),
        "tpm-state.json": m.tpm.to_json().encode(),
        "audit.log": "".join(f"{a}\n" for a in m.audit).encode(),
        "pcrs.json": json.dumps({a.kernel_name: {str(i): v.hex() for i, v in b.items()}
                                 for a, b in m.pcr_values().items()}, indent=1).encode(),
        "policy.txt": m.policy.render().encode(),
    })
    if m.ipe is not None:
        run.artifacts["ipe-audit.log"] = "".join(f"{a}\n" for a in m.ipe.audit).encode()
    run.artifacts["results.json"] = json.dumps(run.to_dict(), indent=1).encode()
    return run


def _pcr_selection(text: str) -> PcrSelection:
    """``"sha256:0-10+sha1:10"`` -> a PcrSelection."""
    sel: dict[HashAlgorithm, list[int]] = {}
    for part in text.split("+"):
        alg, _, rng = part.partition(":")
        idx: list[int] = []
        for piece in rng.split(","):
            lo, _, hi = piece.partition("-")
            try:
                idx += list(range(int(lo), int(hi or lo) + 1))
            except ValueError:
                raise _bad(f"bad PCR list {rng!r}", "pcrs") from None
        sel[HashAlgorithm.from_name(alg)] = idx
    return PcrSelection(sel)


def _act(r: _Runner, m: Machine, run: ScenarioRun, i: int, a: Mapping[str, Any]
         ) -> ActionResult:
    op = a["op"]
    where = f"actions[{i}]"
    target = str(a.get("path") or a.get("kernel") or a.get("key") or a.get("label") or "")
    expect = a.get("expect")
    try:
        res: AccessResult | None = None
        if op == "boot":
            m.boot()
        elif op == "load_policy":
            m.load_policy(str(a.get("text", "")))
        elif op == "add_key":
            m.add_key(str(a.get("keyring", ".ima")), r.kernel_key(str(a.get("key"))))
        elif op in ("exec", "mmap"):
            res = getattr(m, op)(a["path"], uid=int(a.get("uid", 0)), context=a.get("context"))
        elif op in ("read_file", "load_module", "load_firmware"):
            res = getattr(m, op)(a["path"])
        elif op == "open":
            res = m.open(a["path"], MAY_WRITE if a.get("write") else MAY_READ,
                         uid=int(a.get("uid", 0)), context=a.get("context"))
        elif op == "close":
            m.close(a["path"], MAY_WRITE if a.get("write") else MAY_READ)
        elif op == "write_file":
            m.write_file(a["path"], r.content(a, where))
        elif op == "kexec_load":
            res = m.kexec_load(a["kernel"], a.get("initrd"), str(a.get("cmdline", "")))
        elif op == "kexec_execute":
            m.kexec_execute(cmdline=a.get("cmdline"))
        elif op == "power_cycle":
            m.power_cycle()
        elif op == "critical_data":
            m.measure_critical_data(str(a.get("label", "")), str(a.get("name", "")),
                                    r.content(a, where))
        elif op == "blacklist":
            if "key" in a:
                tbs = r.kernel_key(str(a["key"])).tbs_hash()
                if tbs is not None:
                    m.keyrings.blacklist.add_tbs_hash(tbs)
            else:
                m.keyrings.blacklist.add_binary_hash(
                    HashAlgorithm.SHA256.hash(m.files[a["path"]].content))
        elif op == "unpack_initramfs":
            m.unpack_initramfs(write_cpio(r.members(a, where)))
        elif op == "extract_tar":
            m.extract_tar(write_tar(r.members(a, where)))
        elif op == "quote":
            _quote(m, run, a, i)
        elif op == "mount_dm_verity":
            files = {f["path"]: r.file(f, f"{where}.files[{j}]")[0]
                     for j, f in enumerate(a.get("files", []))}
            sig = None
            if "signed_by" in a:
                root = Machine.create().mount_dm_verity(dict(files)).root_hash
                key, cert = r.keys(a["signed_by"])
                sig = sign_pkcs7(root.hex().encode(), key=key, certificate=cert)
            r.roothashes[str(a.get("name", "rootfs"))] = \
                m.mount_dm_verity(files, signature=sig).root_hash
        elif op == "enable_fsverity":
            fsig = None
            if "signed_by" in a:
                key, cert = r.keys(a["signed_by"])
                fsig = sign_fsverity(m.files[a["path"]].content, key=key, certificate=cert)
                m.fsverity_keyring.add(r.kernel_key(a["signed_by"]))
            m.enable_fsverity(a["path"], fsig)
        elif op == "ipe_load_policy":
            if "path" in a:  # cat FILE > new_policy (the file's origin matters to the proposal)
                m.ipe_load_policy_file(a["path"], update=a.get("update"),
                                       activate=bool(a.get("activate")))
            else:
                if m.ipe is None:
                    raise UsageError("IPE is not enabled")
                data = r.signed_policy(a, where)
                p = m.ipe.update_policy(a["update"], data) if "update" in a else \
                    m.ipe.new_policy(data)
                if a.get("activate"):
                    m.ipe.activate(p.name)
        elif op == "ipe_activate":
            if m.ipe is None:
                raise UsageError("IPE is not enabled")
            m.ipe.activate(str(a.get("name")))
        elif op == "ipe_enforce":
            if m.ipe is None:
                raise UsageError("IPE is not enabled")
            m.ipe.set_enforce(bool(a.get("value", True)))
        elif op in ("replay", "measured", "boot_aggregate"):
            res = _check(m, op, a)
    except (ImasimError, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return ActionResult(i, op, target, "error", reason, expect)
    if res is None:
        return ActionResult(i, op, target, "ok", "", expect)
    return ActionResult(i, op, target, "allow" if res.allowed else "deny", res.reason, expect)


def _check(m: Machine, op: str, a: Mapping[str, Any]) -> AccessResult:
    """What a verifier would see, as an outcome: ``replay`` allows when the current list
    replays to the TPM's PCRs, ``measured`` when an entry named ``name`` is in it,
    ``boot_aggregate`` when the list's first boot_aggregate is ``digest`` (hex)."""
    lst = m.measurements
    if op == "replay":
        status = match(lst, m.pcr_values()).status
        return AccessResult(status is MatchStatus.MATCH, reason=status.value)
    if op == "measured":
        found = any(e.event_name == str(a.get("name")) for e in lst)
        return AccessResult(found, reason="" if found else "not in the list")
    d = next((e.file_digest for e in lst if e.event_name == "boot_aggregate"), None)
    agg = d.digest.hex() if d is not None else ""
    return AccessResult(agg == str(a.get("digest", "")).lower(), reason=agg)


def _quote(m: Machine, run: ScenarioRun, a: Mapping[str, Any], i: int) -> None:
    ak = m.tpm.create_ak(a.get("ak", "ecc"), seed=f"scenario-ak-{i}".encode())
    try:
        nonce = bytes.fromhex(str(a.get("nonce", "00" * 20)))
    except ValueError:
        raise _bad("nonce is not hexadecimal", f"actions[{i}].nonce") from None
    q = m.tpm.quote(ak, _pcr_selection(str(a.get("pcrs", "sha256:0-10"))), nonce)
    run.artifacts.update({"quote.msg": q.attest, "quote.sig": q.signature,
                          "quote.pcrs": write_pcr_file(q.selection,
                                                       [v for _, _, v in q.pcr_values]),
                          "ak.pem": ak.public_pem, "nonce.hex": nonce.hex().encode() + b"\n"})
