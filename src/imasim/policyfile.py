"""Writing to IMA's securityfs ``policy`` file (ima_write_policy): rules, or a path.

A write that starts with ``/`` names a policy file the kernel reads itself
(ima_read_policy -> kernel_read_file_from_path(READING_POLICY)): the read is a
POLICY_CHECK, so IPE's ``op=POLICY`` rules and IMA's ``func=POLICY_CHECK`` rules decide
whether it may load, and IMA measures and appraises the file like any other. Once an
``appraise func=POLICY_CHECK`` rule is in the policy (the built-in ``secure_boot``
policy has one, as has 6.12's arch policy with the machine keyring), IMA_APPRAISE_POLICY
is set and rules written directly are refused ("signed policy file (specified as an
absolute pathname) required", -EACCES): only a signed policy file loads.

>>> from imasim.machine import Machine
>>> m = Machine.create(cmdline="ima_policy=secure_boot")
>>> m.boot()
>>> m.load_policy("measure func=BPRM_CHECK\\n")
Traceback (most recent call last):
...
imasim.errors.PolicyError: signed policy file (specified as an absolute pathname) required (EACCES)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PolicyError
from .ima.appraise import AUDIT_INTEGRITY_STATUS
from .ima.policy import MAY_READ, Action, Hook

if TYPE_CHECKING:
    from .kernel import Txn

__all__ = ["write_policy"]

def write_policy(t: Txn, data: str) -> None:
    """One write to the policy file: a path the kernel reads (POLICY_CHECK), or rules."""
    from . import kernel

    if data.startswith("/"):
        path = data.strip()
        r = kernel.process(t, path, Hook.POLICY_CHECK, MAY_READ)
        if not r.allowed:
            t.audit_msg(AUDIT_INTEGRITY_STATUS, "policy_update", "failed", "policy", 0,
                        keep=True)
            raise PolicyError(f"policy file {path} refused: {r.reason} (EACCES)")
        text = t.file(path).content.decode("utf-8", "replace")
    else:
        if any(rule.action is Action.APPRAISE and rule.func is Hook.POLICY_CHECK
               for rule in t.boot.policy.rules):  # IMA_APPRAISE_POLICY
            t.audit_msg(AUDIT_INTEGRITY_STATUS, "policy_update", "signed policy required",
                        "", 0, keep=True)
            raise PolicyError("signed policy file (specified as an absolute pathname) "
                              "required (EACCES)")
        text = data
    kernel.load_policy(t, text)
