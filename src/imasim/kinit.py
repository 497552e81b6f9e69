"""init/main.c ``kernel_init_freeable``: the order in which a booting kernel fills rootfs,
starts IMA, mounts the root file system, loads the integrity keys and the default modules,
before it runs init.

Checked against Debian's linux-source-6.1 (6.1.192) ``init/main.c`` and
``init/initramfs.c``, and against the older ``kernel_init_freeable`` of 3.x/4.x:

1. ``do_basic_setup()`` runs the initcalls. ``populate_rootfs`` (a rootfs_initcall)
   unpacks the initramfs built into the kernel image (CONFIG_INITRAMFS_SOURCE), then the
   boot loader's or kexec's external initrd over it, unless CONFIG_INITRAMFS_FORCE;
   built-in drivers' device_initcalls may ``request_module`` (modprobe from the initramfs,
   the only root there is: usermodehelper_enable comes with populate_rootfs), before IMA
   is up, so IMA neither measures nor appraises those modules; ``init_ima`` (a
   late_initcall) measures boot_aggregate and installs the boot policy.
2. ``wait_for_initramfs()``; when rootfs has no ``rdinit=`` program (``/init`` by
   default), ``prepare_namespace()`` mounts the real root file system.
3. ``integrity_load_keys()`` (3.19+, the 2014 patch set's ``ima_prepare_keys()``): the
   certificates at CONFIG_IMA_X509_PATH / CONFIG_EVM_X509_PATH from whatever is root
   now (the initramfs when it has ``/init``, else the mounted disk).
4. ``load_default_modules()`` (Linux 3.9 to 4.20; gone with the legacy I/O schedulers in
   5.0): ``request_module("%s-iosched")`` for the ``elevator=`` of the command line.
   Since 3.19 it runs after the keys: the thread's "ima_prepare_keys();
   load_default_modules(); ... modprobe will be verified". Before 3.19 the kernel
   loaded no key itself, so that module was appraised against an empty IMA keyring.
5. init: :func:`run_init` is kernel_init's choice of program (``rdinit=`` when rootfs has
   it, ``init=`` whose failure panics, then /sbin/init, /etc/init, /bin/init, /bin/sh),
   around an ``execute`` callback (a scenario's ``run_init`` op passes ``Machine.exec``).

:func:`init_steps` is the order for a kernel version; :func:`default_modules` what
load_default_modules requests; :func:`modprobe_path` where modprobe finds a module.

>>> [s.value for s in init_steps((3, 18))]
['populate_rootfs', 'device_initcall', 'init_ima', 'prepare_namespace', 'load_default_modules']
>>> [s.value for s in init_steps((4, 19))][-2:]
['integrity_load_keys', 'load_default_modules']
>>> [s.value for s in init_steps((6, 1))][-1]
'integrity_load_keys'
>>> default_modules("root=/dev/vda elevator=deadline", (4, 19)), default_modules(
...     "elevator=deadline", (6, 1))
(('deadline-iosched',), ())
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_INITS", "INTEGRITY_LOAD_KEYS_SINCE", "LOAD_DEFAULT_MODULES_VERSIONS",
           "InitOutcome", "InitStep", "default_modules", "init_steps", "modprobe_path",
           "rdinit", "run_init"]

#: try_to_run_init_process's list, after rdinit= and init= (CONFIG_DEFAULT_INIT unset)
DEFAULT_INITS: Final = ("/sbin/init", "/etc/init", "/bin/init", "/bin/sh")

#: "integrity: provide a hook to load keys when rootfs is ready" (Linux 3.19; seen
#: absent from a 3.10 kernel_init_freeable and present, before load_default_modules(),
#: in 4.x ones; the exact release is from the patch's merge, not from a 3.18/3.19 tree)
INTEGRITY_LOAD_KEYS_SINCE: Final = (3, 19)
#: load_default_modules(): from "block: don't request module during elevator init"
#: (3.9) until the legacy I/O schedulers were removed (5.0). 4.x has it and 6.1 has not
#: (checked); the 3.9 and 5.0 bounds are from the block layer's history, unchecked
LOAD_DEFAULT_MODULES_VERSIONS: Final = ((3, 9), (5, 0))


class InitStep(enum.StrEnum):
    """One step of kernel_init_freeable, named after the kernel function it mirrors."""

    POPULATE_ROOTFS = "populate_rootfs"
    DEVICE_INITCALLS = "device_initcall"
    INIT_IMA = "init_ima"
    PREPARE_NAMESPACE = "prepare_namespace"
    INTEGRITY_LOAD_KEYS = "integrity_load_keys"
    LOAD_DEFAULT_MODULES = "load_default_modules"


def init_steps(version: tuple[int, int]) -> tuple[InitStep, ...]:
    """The integrity-relevant steps of kernel_init_freeable for a kernel ``version``, in
    the kernel's order (``prepare_namespace`` is skipped at run time when rootfs holds
    the rdinit program)."""
    steps = [InitStep.POPULATE_ROOTFS, InitStep.DEVICE_INITCALLS, InitStep.INIT_IMA,
             InitStep.PREPARE_NAMESPACE]
    if version >= INTEGRITY_LOAD_KEYS_SINCE:
        steps.append(InitStep.INTEGRITY_LOAD_KEYS)
    lo, hi = LOAD_DEFAULT_MODULES_VERSIONS
    if lo <= version < hi:
        steps.append(InitStep.LOAD_DEFAULT_MODULES)
    return tuple(steps)


def _args(cmdline: str) -> dict[str, str]:
    """The command line's ``key=value`` words (the last one wins, as __setup does)."""
    return dict(w.split("=", 1) for w in cmdline.split() if "=" in w)


def default_modules(cmdline: str, version: tuple[int, int]) -> tuple[str, ...]:
    """The modules load_default_modules requests: load_default_elevator_module's
    ``<elevator>-iosched`` for ``elevator=`` (nothing on kernels without the step)."""
    if InitStep.LOAD_DEFAULT_MODULES not in init_steps(version):
        return ()
    name = _args(cmdline).get("elevator", "")
    return (f"{name}-iosched",) if name else ()


def rdinit(cmdline: str) -> str:
    """ramdisk_execute_command: ``rdinit=`` or ``/init``."""
    return _args(cmdline).get("rdinit", "/init")


def modprobe_path(name: str, paths: Iterable[str]) -> str | None:
    """Where modprobe finds module ``name`` among ``paths``: a ``<name>.ko`` under
    /lib/modules (``-`` and ``_`` are the same to modprobe), the first in sorted order."""
    want = name.replace("-", "_") + ".ko"
    found = sorted(p for p in paths if p.startswith("/lib/modules/")
                   and p.rsplit("/", 1)[-1].replace("-", "_") == want)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class InitOutcome:
    """What kernel_init did: the program that became PID 1 (None: the kernel panicked)
    and its log lines (pr_err for each failed try, then the panic)."""

    init: str | None
    log: tuple[str, ...]


def run_init(cmdline: str, execute: Callable[[str], int], *,
             rdinit_in_rootfs: bool) -> InitOutcome:
    """kernel_init's last part (6.1 init/main.c): ``execute(path)`` runs a program and
    returns 0 or a negative errno (-ENOENT for a missing file, -EACCES when appraisal
    refuses it). ``rdinit=`` (``/init``) is tried when rootfs held it at boot; then
    ``init=``, whose failure panics; then :data:`DEFAULT_INITS` in turn.

    >>> ok = {"/sbin/init"}
    >>> run_init("ro", lambda p: 0 if p in ok else -2, rdinit_in_rootfs=False).init
    '/sbin/init'
    >>> run_init("init=/ima/init", lambda p: -13, rdinit_in_rootfs=False).log[-1]
    'Kernel panic - not syncing: Requested init /ima/init failed (error -13).'
    """
    log: list[str] = []
    if rdinit_in_rootfs:
        path = rdinit(cmdline)
        ret = execute(path)
        if ret == 0:
            return InitOutcome(path, ())
        log.append(f"Failed to execute {path} (error {ret})")
    requested = _args(cmdline).get("init")
    if requested:
        ret = execute(requested)
        if ret == 0:
            return InitOutcome(requested, tuple(log))
        log.append(f"Kernel panic - not syncing: Requested init {requested} failed "
                   f"(error {ret}).")
        return InitOutcome(None, tuple(log))
    for path in DEFAULT_INITS:
        ret = execute(path)
        if ret == 0:
            return InitOutcome(path, tuple(log))
        if ret != -2:  # try_to_run_init_process reports all but ENOENT
            log.append(f"Starting init: {path} exists but couldn't execute it (error {ret})")
    log.append("Kernel panic - not syncing: No working init found.  Try passing init= "
               "option to kernel. See Linux Documentation/admin-guide/init.rst for guidance.")
    return InitOutcome(None, tuple(log))
