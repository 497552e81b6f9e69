"""IPE, Integrity Policy Enforcement (security/ipe/): policies, their evaluation and
lifecycle, the verity digests its properties compare, and (clearly marked, not in
mainline) the unsigned-policy proposal."""

from __future__ import annotations

from .lsm import (
    Decision,
    DeployedPolicy,
    FileProperties,
    Ipe,
    IpeAuditRecord,
    IpeError,
    Providers,
    evaluate,
)
from .policy import Action, IpePolicy, IpePolicyError, IpeRule, Op, Property, parse_ipe_policy
from .verity import (
    dm_verity_root_hash,
    fsverity_digest,
    sign_fsverity,
    verify_fsverity_signature,
)

__all__ = [
    "Action",
    "Decision",
    "DeployedPolicy",
    "FileProperties",
    "Ipe",
    "IpeAuditRecord",
    "IpeError",
    "IpePolicy",
    "IpePolicyError",
    "IpeRule",
    "Op",
    "Property",
    "Providers",
    "dm_verity_root_hash",
    "evaluate",
    "fsverity_digest",
    "parse_ipe_policy",
    "sign_fsverity",
    "verify_fsverity_signature",
]
