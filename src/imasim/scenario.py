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
    policy = "appraise func=KEXEC_INITRAMFS_CHECK appraise_type=imasig"  # written at boot

    [keys.ca]                            # deterministic P-256 test keys, by name
    ca = true
    [keys.vendor]
    issuer = "ca"

    [[files]]
    path = "/usr/bin/app"
    content = "app v1"                   # or content_hex, or source = "relative/file"
    ima_sign = "vendor"                  # security.ima signature (evmctl ima_sign)
    # also: ima_hash = true, modsig = "key", pe_sign = "key", mode, uid, gid, fs,
    # certificate = "key" (its DER), cpio = [files] (an initramfs archive of them),
    # initramfs = [files] (a kernel image with them built in, CONFIG_INITRAMFS_SOURCE)

    [[actions]]
    op = "exec"
    path = "/usr/bin/app"
    expect = "allow"                     # or "deny"; the run fails when it differs

Actions: :data:`OPS` is the one table of them, each with its keys and their types
(``op``, ``expect`` and ``title`` are allowed everywhere); a key an op does not know,
or a value of the wrong type, is a :class:`ScenarioError` naming the action, the op and
the key. ``boot`` is done first automatically unless the first action is one. Files a
scenario names (``source =``) are read through the ``read`` callback:
:func:`imasim.io.confined_reader` keeps them inside the scenario's folder, regular and
size-bounded.

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
from pathlib import PurePosixPath
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ._bounded import check_json_depth, check_toml_depth
from .algorithms import HashAlgorithm
from .archive import ArchiveMember, write_cpio, write_tar
from .env import FixedClock, SeededEntropy
from .errors import ImasimError, ParseError, UsageError
from .eventlog.simulate import FLAVOURS, SimulatedFirmware
from .ima.policy import MAY_READ, MAY_WRITE
from .ima.replay import MatchStatus, match
from .ipe.lsm import Ipe
from .ipe.verity import sign_fsverity
from .kconfig import PRESETS, KernelConfig
from .kernel import Firmware, measure_firmware
from .keys.generate import derive_ec_key, make_certificate
from .keys.key import Key
from .keys.keyring import BlacklistKey
from .kimage import firmware_booting, kernel_image
from .kinit import rdinit, run_init
from .machine import EXT4, PROC, RAMFS, TMPFS, AccessResult, Machine
from .sig.authenticode import sign_pe
from .sig.modsig import sign_module, split_modsig
from .sig.pefile import build_pe
from .sig.pkcs7 import sign_pkcs7
from .sig.xattr import XattrKind, sign_xattr
from .tpm.marshal import PcrSelection
from .tpm.soft_tpm import Quote
from .tpm.verify import write_pcr_file

__all__ = ["OPS", "ActionResult", "OpSpec", "Scenario", "ScenarioError", "ScenarioRun",
           "parse_scenario", "run_scenario"]

_FS: Final = {"ext4": EXT4, "tmpfs": TMPFS, "ramfs": RAMFS, "proc": PROC}


class ScenarioError(ParseError):
    """A scenario that does not follow the format: ``field`` names the place (e.g.
    ``actions[3].ptah``) and the message the op and what was expected."""


def _bad(message: str, where: str) -> ScenarioError:
    return ScenarioError(message, field=where)


# -- the schema ----------------------------------------------------------------------------
#: value kinds: a Python type, "files" (a list of file tables), "strs" (a list of strings)
_Kind = type | str
_FILE_KEYS: Final[Mapping[str, _Kind]] = {
    "path": str, "content": str, "content_hex": str, "source": str, "ima_sign": str,
    "ima_hash": bool, "modsig": str, "pe_sign": str, "mode": int, "uid": int, "gid": int,
    "fs": str, "selinux": str, "certificate": str, "initramfs": "files", "cpio": "files"}
_MACHINE_KEYS: Final[Mapping[str, _Kind]] = {
    "preset": str, "cmdline": str, "banks": "strs", "builtin_keys": "strs",
    "secure_boot": bool, "config": dict, "seed": str, "clock": float, "ipe": bool,
    "ipe_boot_policy": str, "ipe_unsigned_policy_by_rule": bool, "secondary_keys": "strs",
    "firmware": str, "kernel_image": bool, "policy": str, "initramfs": "files",
    "initrd": "files"}
_KEY_KEYS: Final[Mapping[str, _Kind]] = {"ca": bool, "issuer": str, "cn": str, "seed": str}
_TOP_KEYS: Final[Mapping[str, _Kind]] = {"machine": dict, "keys": dict, "files": "files",
                                         "actions": list, "name": str, "description": str}
_COMMON: Final[Mapping[str, _Kind]] = {"op": str, "expect": str, "title": str}


def _kind_ok(value: object, kind: _Kind) -> bool:
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "files":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    assert isinstance(kind, type)
    return isinstance(value, kind)


def _kind_name(kind: _Kind) -> str:
    return {"strs": "a list of strings", "files": "a list of file tables"}.get(
        kind if isinstance(kind, str) else "", getattr(kind, "__name__", str(kind)))


def _check_table(table: Mapping[str, Any], schema: Mapping[str, _Kind], where: str,
                 what: str) -> None:
    """Every key known to ``schema`` and of its kind, else a ScenarioError naming it."""
    for key, value in table.items():
        kind = schema.get(key)
        if kind is None:
            raise _bad(f"{what}: unknown key {key!r}; it takes {sorted(schema)}",
                       f"{where}.{key}")
        if not _kind_ok(value, kind):
            raise _bad(f"{what}: {key} must be {_kind_name(kind)}", f"{where}.{key}")


def _check_source(name: str, where: str) -> None:
    """A file named by a scenario: relative, inside its folder (no '..')."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or "\0" in name:
        raise _bad(f"source {name!r} must be a relative path inside the scenario's folder",
                   f"{where}.source")


def _check_files(files: Sequence[Mapping[str, Any]], keys: Mapping[str, Any],
                 where: str) -> None:
    for j, f in enumerate(files):
        w = f"{where}[{j}]"
        _check_table(f, _FILE_KEYS, w, "a file")
        if not isinstance(f.get("path"), str) or not f["path"].startswith("/"):
            raise _bad("each file needs an absolute path", w)
        for k in ("ima_sign", "modsig", "pe_sign", "certificate"):
            if k in f and f[k] not in keys:
                raise _bad(f"{k} names an unknown key {f[k]!r}", f"{w}.{k}")
        if "fs" in f and f["fs"] not in _FS:
            raise _bad(f"unknown file system {f['fs']!r}; one of {sorted(_FS)}", f"{w}.fs")
        if "source" in f:
            _check_source(f["source"], w)
        for k in ("initramfs", "cpio"):  # archives of files: a built-in or external one
            if k in f:
                _check_files(f[k], keys, f"{w}.{k}")


Handler = Callable[["_Runner", Machine, "ScenarioRun", Mapping[str, Any], str],
                   AccessResult | None]


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One scenario op: its keys (name -> kind), the ones it requires, what it does, and
    the key that names its target in reports."""

    keys: Mapping[str, _Kind]
    required: frozenset[str]
    run: Handler
    doc: str
    target: str = "path"


def _access(op: str) -> Handler:
    def run(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
            ) -> AccessResult:
        if op in ("exec", "mmap"):
            res: AccessResult = getattr(m, op)(a["path"], uid=a.get("uid", 0),
                                               context=a.get("context"))
            return res
        if op == "open":
            return m.open(a["path"], MAY_WRITE if a.get("write") else MAY_READ,
                          uid=a.get("uid", 0), context=a.get("context"))
        fn: Callable[[str], AccessResult] = getattr(m, op)
        return fn(a["path"])
    return run


def _none(fn: Callable[[_Runner, Machine, ScenarioRun, Mapping[str, Any], str], object]
          ) -> Handler:
    def run(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str) -> None:
        fn(r, m, run, a, w)
    return run


def _blacklist(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
               ) -> None:
    if "key" in a:
        tbs = r.kernel_key(a["key"]).tbs_hash()
        if tbs is not None:
            m.keyrings.blacklist.add_tbs_hash(tbs)
    elif "path" in a:
        m.keyrings.blacklist.add_binary_hash(HashAlgorithm.SHA256.hash(_file(m, a["path"])))
    else:
        raise _bad("blacklist takes a path or a key", w)


def _add_key(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
             ) -> None:
    """add_key(2): a key's certificate, or (into .blacklist) a ``blacklist`` key whose
    description is ``description``, the ``bin:`` SHA-256 of ``hash_of``'s content without
    its appended signature (the digest IMA's check_blacklist compares for a SHA-256
    modsig) or the ``tbs:`` hash of ``tbs_of``'s certificate; its payload is a detached
    PKCS#7 signature of the description by ``signed_by`` (empty without)."""
    ring = a.get("keyring", ".ima")
    if "key" in a:
        m.add_key(ring, r.kernel_key(a["key"]))
        return
    if "hash_of" in a:
        data = _file(m, a["hash_of"])
        split = split_modsig(data)
        desc = "bin:" + HashAlgorithm.SHA256.hash(split[0] if split else data).hex()
    elif "tbs_of" in a:
        tbs = r.kernel_key(a["tbs_of"]).tbs_hash()
        if tbs is None:
            raise _bad("the key has no certificate", f"{w}.tbs_of")
        desc = "tbs:" + tbs.hex()
    else:
        desc = str(a["description"])
    payload = b""
    if "signed_by" in a:
        key, cert = r.keys(a["signed_by"])
        payload = sign_pkcs7(desc.encode(), key=key, certificate=cert)
    m.add_key(ring, BlacklistKey(desc, payload))


def _file(m: Machine, path: str) -> bytes:
    f = m.files.get(path)
    if f is None:
        raise UsageError(f"no such file {path!r}")
    return f.content


def _mount(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str) -> None:
    files = {f["path"]: r.file(f, f"{w}.files[{j}]")[0]
             for j, f in enumerate(a.get("files", []))}
    sig = None
    if "signed_by" in a:
        root = Machine.create().mount_dm_verity(dict(files)).root_hash
        key, cert = r.keys(a["signed_by"])
        sig = sign_pkcs7(root.hex().encode(), key=key, certificate=cert)
    r.roothashes[a.get("name", "rootfs")] = m.mount_dm_verity(files, signature=sig).root_hash


def _fsverity(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
              ) -> None:
    fsig = None
    if "signed_by" in a:
        key, cert = r.keys(a["signed_by"])
        fsig = sign_fsverity(_file(m, a["path"]), key=key, certificate=cert)
        m.fsverity_keyring.add(r.kernel_key(a["signed_by"]))
    m.enable_fsverity(a["path"], fsig)


def _ipe(m: Machine) -> Ipe:
    if m.ipe is None:
        raise UsageError("IPE is not enabled")
    return m.ipe


def _ipe_load(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
              ) -> None:
    if "path" in a:  # cat FILE > new_policy (the file's origin matters to the proposal)
        m.ipe_load_policy_file(a["path"], update=a.get("update"),
                               activate=a.get("activate", False))
        return
    ipe = _ipe(m)
    data = r.signed_policy(a, w)
    p = ipe.update_policy(a["update"], data) if "update" in a else ipe.new_policy(data)
    if a.get("activate"):
        ipe.activate(p.name)


def _tamper(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
            ) -> None:
    find, new = str(a["find"]).encode(), str(a["replace"]).encode()
    data = _file(m, a["path"])
    if find not in data:
        raise UsageError(f"tamper: {a['find']!r} is not in {a['path']}")
    m.write_file(a["path"], data.replace(find, new, 1))


def _file_is(r: _Runner, m: Machine, a: Mapping[str, Any], w: str) -> AccessResult:
    f = m.files.get(a["path"])
    if f is None:
        return AccessResult(False, reason="no such file")
    same = f.content == r.content(a, w)
    return AccessResult(same, reason="" if same else "different content")


def _run_init(r: _Runner, m: Machine, run: ScenarioRun, a: Mapping[str, Any], w: str
              ) -> AccessResult:
    """kernel_init's choice of init (imasim.kinit.run_init), each try an execve."""
    tried: dict[str, AccessResult] = {}

    def execute(path: str) -> int:
        if path not in m.files:
            return -2  # ENOENT
        tried[path] = m.exec(path)
        return 0 if tried[path].allowed else -13  # EACCES

    cmdline = m.boot_options.cmdline
    rd = m.files.get(rdinit(cmdline))
    out = run_init(cmdline, execute, rdinit_in_rootfs=rd is not None and rd.fs.initramfs)
    if out.init is None:
        return AccessResult(False, reason="; ".join(out.log))
    res = tried[out.init]
    return AccessResult(True, res.measured, res.appraised, f"init: {out.init}")


_FILE_OP: Final[Mapping[str, _Kind]] = {"path": str}
_HOOK: Final[Mapping[str, _Kind]] = {"path": str, "uid": int, "context": str}
_CONTENT: Final[Mapping[str, _Kind]] = {"content": str, "content_hex": str, "source": str}

#: every scenario op: its keys, the required ones, and what it does
OPS: Final[Mapping[str, OpSpec]] = {
    "boot": OpSpec({}, frozenset(), _none(lambda r, m, run, a, w: m.boot(*r.boot_archives())),
                   "IMA init (done first automatically unless the first action is one)"),
    "load_policy": OpSpec({"text": str}, frozenset({"text"}),
                          _none(lambda r, m, run, a, w: m.load_policy(a["text"])),
                          "write a custom IMA policy", "text"),
    "add_key": OpSpec({"keyring": str, "key": str, "hash_of": str, "tbs_of": str,
                       "description": str, "signed_by": str}, frozenset(), _none(_add_key),
                      "add_key(2) from user space (permissions, then the restriction): "
                      "key, or into .blacklist a hash_of (bin:) / tbs_of (tbs:) / "
                      "description signed by signed_by", "key"),
    "exec": OpSpec(_HOOK, frozenset({"path"}), _access("exec"), "execve: BPRM_CHECK"),
    "mmap": OpSpec(_HOOK, frozenset({"path"}), _access("mmap"), "mmap PROT_EXEC: MMAP_CHECK"),
    "open": OpSpec({**_HOOK, "write": bool}, frozenset({"path"}), _access("open"),
                   "open (write = true for write access): FILE_CHECK; stays open"),
    "close": OpSpec({"path": str, "write": bool}, frozenset({"path"}),
                    _none(lambda r, m, run, a, w: m.close(
                        a["path"], MAY_WRITE if a.get("write") else MAY_READ)),
                    "close a file opened with open"),
    "read_file": OpSpec(_FILE_OP, frozenset({"path"}), _access("read_file"),
                        "open for read and close"),
    "write_file": OpSpec({"path": str, **_CONTENT}, frozenset({"path"}),
                         _none(lambda r, m, run, a, w: m.write_file(a["path"],
                                                                    r.content(a, w))),
                         "replace a file's content (i_version + 1)"),
    "load_module": OpSpec(_FILE_OP, frozenset({"path"}), _access("load_module"),
                          "finit_module: MODULE_CHECK, then the module signature"),
    "load_firmware": OpSpec(_FILE_OP, frozenset({"path"}), _access("load_firmware"),
                            "request_firmware: FIRMWARE_CHECK"),
    "kexec_load": OpSpec({"kernel": str, "initrd": str, "cmdline": str, "syscall": str},
                         frozenset({"kernel"}),
                         lambda r, m, run, a, w: m.kexec_load(
                             a["kernel"], a.get("initrd"), a.get("cmdline", ""),
                             syscall=a.get("syscall", "kexec_file_load")),
                         "kexec_file_load of kernel (and initrd), measuring cmdline; "
                         'syscall = "kexec_load": the classic call (nothing checked)',
                         "kernel"),
    "kexec_unload": OpSpec({"syscall": str}, frozenset(),
                           lambda r, m, run, a, w: m.kexec_load(
                               None, syscall=a.get("syscall", "kexec_file_load")),
                           'kexec -u (syscall = "kexec_load": kexec -c -u, which the LSMs '
                           "judge as a load)", "syscall"),
    "kexec_execute": OpSpec({"cmdline": str}, frozenset(),
                            _none(lambda r, m, run, a, w: m.kexec_execute(
                                cmdline=a.get("cmdline"))),
                            "kexec -e (a new kernel; cmdline replaces the loaded one)"),
    "power_cycle": OpSpec({}, frozenset(), _none(lambda r, m, run, a, w: m.power_cycle()),
                          "a cold reboot: TPM Reset, a fresh kernel"),
    "critical_data": OpSpec({"label": str, "name": str, **_CONTENT},
                            frozenset({"label", "name"}),
                            _none(lambda r, m, run, a, w: m.measure_critical_data(
                                a["label"], a["name"], r.content(a, w))),
                            "ima_measure_critical_data", "label"),
    "blacklist": OpSpec({"path": str, "key": str}, frozenset(), _none(_blacklist),
                        "a bin: hash (of path's content) or tbs: hash (of key) in .blacklist"),
    "unpack_initramfs": OpSpec({"files": "files"}, frozenset({"files"}),
                               _none(lambda r, m, run, a, w: m.unpack_initramfs(
                                   write_cpio(r.members(a, w)))),
                               "files packed into a cpio newc, unpacked into rootfs"),
    "extract_tar": OpSpec({"files": "files"}, frozenset({"files"}),
                          _none(lambda r, m, run, a, w: m.extract_tar(
                              write_tar(r.members(a, w)))),
                          "files packed into a pax tar (xattrs kept), extracted"),
    "quote": OpSpec({"nonce": str, "pcrs": str, "ak": str}, frozenset(),
                    _none(lambda r, m, run, a, w: _quote(m, run, a, w)),
                    "TPM2_Quote: the files tpm2_checkquote reads", "pcrs"),
    "mount_dm_verity": OpSpec({"files": "files", "name": str, "signed_by": str},
                              frozenset({"files"}), _none(_mount),
                              "a dm-verity volume (root hash signed by signed_by)", "name"),
    "enable_fsverity": OpSpec({"path": str, "signed_by": str}, frozenset({"path"}),
                              _none(_fsverity), "FS_IOC_ENABLE_VERITY (signed by signed_by)"),
    "ipe_load_policy": OpSpec({"path": str, "update": str, "activate": bool, "signed_by": str,
                               **_CONTENT}, frozenset(), _none(_ipe_load),
                              "write an IPE policy (a file's, or content signed by "
                              "signed_by) to new_policy or policies/<update>/update"),
    "ipe_activate": OpSpec({"name": str}, frozenset({"name"}),
                           _none(lambda r, m, run, a, w: _ipe(m).activate(a["name"])),
                           "activate an IPE policy", "name"),
    "ipe_enforce": OpSpec({"value": bool}, frozenset(),
                          _none(lambda r, m, run, a, w: _ipe(m).set_enforce(
                              a.get("value", True))),
                          "IPE's enforce switch", "value"),
    "run_init": OpSpec({}, frozenset(), _run_init,
                       "kernel_init runs init: rdinit=, init= (a failure panics), then "
                       "/sbin/init, /etc/init, /bin/init, /bin/sh (allow: one ran)", "op"),
    "tamper": OpSpec({"path": str, "find": str, "replace": str},
                     frozenset({"path", "find", "replace"}), _none(_tamper),
                     "replace the first find with replace (as long) in a file's bytes, as "
                     "an attacker writing the disk would (xattrs and signatures stay)"),
    "module_loaded": OpSpec(_FILE_OP, frozenset({"path"}),
                            lambda r, m, run, a, w: _check(m, "module_loaded", a),
                            "allow when the module at path is loaded (this boot)"),
    "file_is": OpSpec({"path": str, **_CONTENT}, frozenset({"path"}),
                      lambda r, m, run, a, w: _file_is(r, m, a, w),
                      "allow when the file at path holds exactly content"),
    "replay": OpSpec({}, frozenset(), lambda r, m, run, a, w: _check(m, "replay", a),
                     "allow when the list replays to the TPM's PCRs (what a verifier sees)"),
    "measured": OpSpec({"name": str}, frozenset({"name"}),
                       lambda r, m, run, a, w: _check(m, "measured", a),
                       "allow when an entry named name is in the list", "name"),
    "boot_aggregate": OpSpec({"digest": str}, frozenset({"digest"}),
                             lambda r, m, run, a, w: _check(m, "boot_aggregate", a),
                             "allow when the list's boot_aggregate is digest (hex)", "digest"),
}


#: what an add_key action adds: exactly one of these
_KEY_SOURCES: Final = ("key", "hash_of", "tbs_of", "description")


def _check(m: Machine, op: str, a: Mapping[str, Any]) -> AccessResult:
    """What a verifier would see, as an outcome: ``replay`` allows when the current list
    replays to the TPM's PCRs, ``measured`` when an entry named ``name`` is in it,
    ``boot_aggregate`` when the list's first boot_aggregate is ``digest`` (hex)."""
    lst = m.measurements
    if op == "replay":
        status = match(lst, m.pcr_values()).status
        return AccessResult(status is MatchStatus.MATCH, reason=status.value)
    if op == "module_loaded":
        loaded = str(a.get("path")) in m.loaded_modules
        return AccessResult(loaded, reason="" if loaded else "not loaded")
    if op == "measured":
        found = any(e.event_name == str(a.get("name")) for e in lst)
        return AccessResult(found, reason="" if found else "not in the list")
    d = next((e.file_digest for e in lst if e.event_name == "boot_aggregate"), None)
    agg = d.digest.hex() if d is not None else ""
    return AccessResult(agg == str(a.get("digest", "")).lower(), reason=agg)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario document (``data``) and the reader for files it names."""

    data: Mapping[str, Any]
    read: Callable[[str], bytes] | None = None


def parse_scenario(text: str, *, fmt: str = "toml",
                   read: Callable[[str], bytes] | None = None) -> Scenario:
    """Parse and validate a scenario (``fmt`` is ``"toml"`` or ``"json"``); errors are
    :class:`ScenarioError` naming the table, the op and the key (TOML syntax errors
    carry the line). Nesting deeper than ``imasim.io.MAX_DOCUMENT_DEPTH`` (and a TOML key
    of more dotted parts) is refused before the recursive parser runs."""
    (check_toml_depth if fmt == "toml" else check_json_depth)(text, what="scenario")
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ScenarioError(f"TOML: {exc}", line=int(m.group(1)) if m else None) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"JSON: {exc.msg}", line=exc.lineno, offset=exc.pos) from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise ScenarioError(f"{fmt.upper()}: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise _bad("a scenario is a table", "scenario")
    _validate(data)
    return Scenario(data, read)


def _validate(data: Mapping[str, Any]) -> None:
    _check_table(data, _TOP_KEYS, "scenario", "the scenario")
    machine = data.get("machine", {})
    _check_table(machine, _MACHINE_KEYS, "machine", "[machine]")
    if machine.get("preset", "generic-6.1-ima-kexec") not in PRESETS:
        raise _bad(f"unknown preset {machine.get('preset')!r}; one of {sorted(PRESETS)}",
                   "machine.preset")
    if machine.get("firmware", "legacy") not in FLAVOURS:
        raise _bad(f"unknown firmware {machine['firmware']!r}; one of {sorted(FLAVOURS)}",
                   "machine.firmware")
    known = {f.name for f in fields(KernelConfig)}
    for k in machine.get("config", {}):
        if k not in known:
            raise _bad(f"unknown Kconfig switch {k!r}", "machine.config")
    keys = data.get("keys", {})
    if not all(isinstance(v, dict) for v in keys.values()):
        raise _bad("must be a table of tables", "keys")
    for name, spec in keys.items():
        _check_table(spec, _KEY_KEYS, f"keys.{name}", f"key {name!r}")
        if spec.get("issuer") is not None and spec["issuer"] not in keys:
            raise _bad(f"issuer {spec['issuer']!r} is not a key", f"keys.{name}.issuer")
    for k in ("builtin_keys", "secondary_keys"):
        for name in machine.get(k, []):
            if name not in keys:
                raise _bad(f"{k} names an unknown key {name!r}", f"machine.{k}")
    _check_files(data.get("files", []), keys, "files")
    for k in ("initramfs", "initrd"):
        _check_files(machine.get(k, []), keys, f"machine.{k}")
    acts = data.get("actions", [])
    if "policy" in machine and acts and isinstance(acts[0], dict) and acts[0].get("op") == "boot":
        raise _bad("policy is loaded after the automatic boot; drop the first boot action",
                   "machine.policy")
    for i, a in enumerate(acts):
        where = f"actions[{i}]"
        spec = OPS.get(str(a.get("op"))) if isinstance(a, dict) else None
        if spec is None:
            raise _bad(f"unknown op {a.get('op') if isinstance(a, dict) else a!r}; one of "
                       f"{sorted(OPS)}", f"{where}.op")
        op = a["op"]
        _check_table(a, {**_COMMON, **spec.keys}, where, f"op {op!r}")
        missing = spec.required - set(a)
        if missing:
            raise _bad(f"op {op!r} needs {sorted(missing)}", f"{where}.{min(missing)}")
        if op == "add_key" and sum(k in a for k in _KEY_SOURCES) != 1:
            raise _bad(f"op 'add_key' takes one of {', '.join(_KEY_SOURCES)}", where)
        if op == "add_key" and "signed_by" in a and "key" in a:
            raise _bad("signed_by signs a blacklist key's description, not a key",
                       f"{where}.signed_by")
        if "tbs_of" in a and a["tbs_of"] not in keys:
            raise _bad(f"op {op!r}: tbs_of names an unknown key {a['tbs_of']!r}",
                       f"{where}.tbs_of")
        if a.get("expect") not in (None, "allow", "deny", "error"):
            raise _bad("expect is allow, deny or error", f"{where}.expect")
        for k in ("key", "signed_by"):
            if k in a and a[k] not in keys:
                raise _bad(f"op {op!r}: {k} names an unknown key {a[k]!r}", f"{where}.{k}")
        if op == "tamper" and (not a["find"] or
                               len(a["find"].encode()) != len(a["replace"].encode())):
            raise _bad("tamper: find and replace must be non-empty and as long",
                       f"{where}.replace")
        if "files" in a:
            _check_files(a["files"], keys, f"{where}.files")
        if "source" in a:
            _check_source(a["source"], where)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one action did: ``outcome`` is allow, deny, ok or error."""

    index: int
    op: str
    target: str
    outcome: str
    reason: str = ""
    expect: str | None = None
    title: str | None = None  #: the action's ``title``, for reports

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
    #: each ``quote`` action's quote, in order
    quotes: list[Quote] = field(default_factory=list)

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
            _check_source(spec["source"], where)
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
        if "cpio" in spec:  # an external initramfs: a cpio newc of the files
            data = write_cpio(self.members({"files": spec["cpio"]}, f"{where}.cpio"))
        if "initramfs" in spec:  # a kernel image with them built in (INITRAMFS_SOURCE)
            data = kernel_image([], code=data, initramfs=write_cpio(
                self.members({"files": spec["initramfs"]}, f"{where}.initramfs")))
        if "pe_sign" in spec:
            key, cert = self._keys[spec["pe_sign"]]
            data = sign_pe(data if "initramfs" in spec else build_pe(data), key=key,
                           certificate=cert)
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
        builtin = [self.kernel_key(k) for k in spec.get("builtin_keys", [])]
        firmware: Firmware = (SimulatedFirmware(spec["firmware"]) if "firmware" in spec
                              else measure_firmware)
        if spec.get("kernel_image"):  # PCR 4 measures the kernel image, keys compiled in
            builtin_cpio, initrd = self.boot_archives()
            firmware = firmware_booting(kernel_image([k.der or b"" for k in builtin],
                                                     initramfs=builtin_cpio), initrd=initrd)
        m = Machine.create(config=cfg, cmdline=spec.get("cmdline", "ima_policy=tcb"),
                           banks=banks, secure_boot=bool(spec.get("secure_boot", False)),
                           builtin_keys=builtin,
                           entropy=SeededEntropy(str(spec.get("seed", "scenario")).encode()),
                           clock=FixedClock(float(spec.get("clock", 0.0))),
                           firmware=firmware)
        if "ipe_boot_policy" in spec or spec.get("ipe"):
            m.enable_ipe(spec.get("ipe_boot_policy"), unsigned_policy_by_rule=bool(
                spec.get("ipe_unsigned_policy_by_rule", False)))
        for k in spec.get("secondary_keys", []):
            m.keyrings.secondary.add(self.kernel_key(k))
        return m

    def boot_archives(self) -> tuple[bytes, bytes | None]:
        """The machine's ``initramfs`` (built into its kernel image) and ``initrd`` (the
        boot loader's), as cpio newc archives for populate_rootfs."""
        spec = self.data.get("machine", {})
        builtin = write_cpio(self.members({"files": spec["initramfs"]}, "machine.initramfs")
                             ) if "initramfs" in spec else b""
        initrd = write_cpio(self.members({"files": spec["initrd"]}, "machine.initrd")
                            ) if "initrd" in spec else None
        return builtin, initrd

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
        m.boot(*r.boot_archives())
        if "policy" in s.data.get("machine", {}):  # what user space writes first
            try:
                m.load_policy(s.data["machine"]["policy"])
            except ImasimError as exc:
                raise _bad(f"the IMA policy: {exc}", "machine.policy") from None
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
        "boot.log": "".join(f"{line}\n" for line in m.state.boot.boot_log).encode(),
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
    spec = OPS[op]
    where = f"actions[{i}]"
    target = str(a.get(spec.target, a.get("path", "")))
    expect = a.get("expect")
    try:
        res = spec.run(r, m, run, a, where)
    except ImasimError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return ActionResult(i, op, target, "error", reason, expect, a.get("title"))
    if res is None:
        return ActionResult(i, op, target, "ok", "", expect, a.get("title"))
    return ActionResult(i, op, target, "allow" if res.allowed else "deny", res.reason, expect,
                        a.get("title"))


def _quote(m: Machine, run: ScenarioRun, a: Mapping[str, Any], where: str) -> None:
    kind = a.get("ak", "ecc")
    if kind not in ("ecc", "rsa"):
        raise _bad("ak is ecc or rsa", f"{where}.ak")
    ak = m.tpm.create_ak(kind, seed=f"scenario-ak-{where}".encode())
    try:
        nonce = bytes.fromhex(str(a.get("nonce", "00" * 20)))
    except ValueError:
        raise _bad("nonce is not hexadecimal", f"{where}.nonce") from None
    q = m.tpm.quote(ak, _pcr_selection(str(a.get("pcrs", "sha256:0-10"))), nonce)
    run.quotes.append(q)
    run.artifacts.update({"quote.msg": q.attest, "quote.sig": q.signature,
                          "quote.pcrs": write_pcr_file(q.selection,
                                                       [v for _, _, v in q.pcr_values]),
                          "ak.pem": ak.public_pem, "nonce.hex": nonce.hex().encode() + b"\n"})
