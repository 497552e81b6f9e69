# ruff: noqa: E501  (the admin guide's example policies are kept verbatim)
"""IPE policy text: the examples of Documentation/admin-guide/LSM/ipe.rst, and every way
policy_parser.c refuses a policy (line, token, errno)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.ipe import Action, IpePolicyError, Op, parse_ipe_policy
from imasim.ipe.policy import EBADMSG, EINVAL, ERANGE

#: "Policy Examples" of the kernel's admin guide (torvalds/linux, 6.12+), verbatim
DOC_EXAMPLES = {
    "Allow_All": "policy_name=Allow_All policy_version=0.0.0\nDEFAULT action=ALLOW\n",
    "Allow_Initramfs": """policy_name=Allow_Initramfs policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE boot_verified=TRUE action=ALLOW
""",
    "Allow_Signed_DMV_And_Initramfs": """policy_name=Allow_Signed_DMV_And_Initramfs policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE boot_verified=TRUE action=ALLOW
op=EXECUTE dmverity_signature=TRUE action=ALLOW
""",
    "Deny_DMV_By_Roothash": """policy_name=Deny_DMV_By_Roothash policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE dmverity_roothash=sha256:cd2c5bae7c6c579edaae4353049d58eb5f2e8be0244bf05345bc8e5ed257baff action=DENY

op=EXECUTE boot_verified=TRUE action=ALLOW
op=EXECUTE dmverity_signature=TRUE action=ALLOW
""",
    "Allow_DMV_By_Roothash": """policy_name=Allow_DMV_By_Roothash policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE dmverity_roothash=sha256:401fcec5944823ae12f62726e8184407a5fa9599783f030dec146938 action=ALLOW
""",
    "Allow_Signed_And_Validated_FSVerity": """policy_name=Allow_Signed_And_Validated_FSVerity policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE fsverity_signature=TRUE action=ALLOW
""",
    "ALLOW_FSV_By_Digest": """policy_name=ALLOW_FSV_By_Digest policy_version=0.0.0
DEFAULT action=DENY

op=EXECUTE fsverity_digest=sha256:fd88f2b8824e197f850bf4c5109bea5cf0ee38104f710843bb72da796ba5af9e action=ALLOW
""",
}


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_doc_examples_parse(name: str) -> None:
    p = parse_ipe_policy(DOC_EXAMPLES[name])
    assert p.name == name and p.version == (0, 0, 0)
    assert p.global_default is (Action.ALLOW if name == "Allow_All" else Action.DENY)
    assert parse_ipe_policy(p.render()).rules == p.rules


def test_the_56_digit_roothash_of_the_docs_parses_as_28_bytes() -> None:
    """The algorithm name is not validated and the length not checked against it."""
    p = parse_ipe_policy(DOC_EXAMPLES["Allow_DMV_By_Roothash"])
    (rule,) = p.rules[Op.EXECUTE]
    assert rule.props[0].alg == "sha256" and len(rule.props[0].digest) == 28


def test_lexical_rules() -> None:
    p = parse_ipe_policy("policy_name=x policy_version=1.2.3\r"
                         "DEFAULT action=ALLOW   # trailing comment\n"
                         "\t op=KMODULE\tboot_verified=FALSE  action=DENY \n"
                         "# only a comment\n")
    assert p.version == (1, 2, 3) and p.version_key == (1 << 32) | (2 << 16) | 3
    assert [r.render() for r in p.rules[Op.KMODULE]] == \
        ["op=KMODULE boot_verified=FALSE action=DENY"]


@pytest.mark.parametrize("text, line, errno, token", [
    ("", None, EBADMSG, None),
    ("# nothing\n", None, EBADMSG, None),
    ("policy_version=0.0.0 policy_name=x\nDEFAULT action=ALLOW", 1, EBADMSG, None),
    ("policy_name=x\nDEFAULT action=ALLOW", 1, EBADMSG, None),
    ("policy_name=x policy_version=0.0.0 extra\n", 1, EBADMSG, None),
    ("policy_name=x policy_version=0.0\nDEFAULT action=ALLOW", 1, EBADMSG, None),
    ("policy_name=x policy_version=0.0.0.0\nDEFAULT action=ALLOW", 1, EBADMSG, None),
    ("policy_name=x policy_version=a.0\nDEFAULT action=ALLOW", 1, EINVAL, None),
    ("policy_name=x policy_version=65536.0.0\nDEFAULT action=ALLOW", 1, ERANGE, None),
    ("policy_name=x policy_version=0.0.0\nop=EXECUTE action=allow\nDEFAULT action=ALLOW",
     2, EBADMSG, "action=allow"),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\naction=ALLOW op=EXECUTE",
     3, EBADMSG, "op=EXECUTE"),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\nop=EXEC action=ALLOW",
     3, EBADMSG, "op=EXEC"),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\n"
     "op=EXECUTE boot_verified=true action=ALLOW", 3, EBADMSG, "boot_verified=true"),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\n"
     "op=EXECUTE fsverity_digest=abcd action=ALLOW", 3, EBADMSG, "fsverity_digest=abcd"),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\n"
     "op=EXECUTE fsverity_digest=sha256:abc action=ALLOW", 3, EINVAL, None),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\nDEFAULT action=DENY",
     3, EBADMSG, None),
    ("policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\n"
     "DEFAULT op=EXECUTE boot_verified=TRUE action=ALLOW", 3, EBADMSG, None),
    ("policy_name=x policy_version=0.0.0\nDEFAULT op=EXECUTE action=ALLOW\n"
     "DEFAULT op=EXECUTE action=DENY", 3, EBADMSG, None),
    ("policy_name=x policy_version=0.0.0\nop=EXECUTE action=ALLOW\n", None, EBADMSG, None),
])
def test_refusals(text: str, line: int | None, errno: int, token: str | None) -> None:
    with pytest.raises(IpePolicyError) as e:
        parse_ipe_policy(text)
    assert e.value.errno == errno
    if line is not None:
        assert e.value.line == line
    if token is not None:
        assert e.value.token == token


def test_every_op_default_replaces_the_global_default() -> None:
    text = "policy_name=x policy_version=0.0.0\n" + "".join(
        f"DEFAULT op={op.value} action=DENY\n" for op in Op)
    assert parse_ipe_policy(text).global_default is None
    with pytest.raises(IpePolicyError, match="X509_CERT"):
        parse_ipe_policy(text.replace("DEFAULT op=X509_CERT action=DENY\n", ""))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_a_policy_error(text: str) -> None:
    try:
        parse_ipe_policy("policy_name=f policy_version=0.0.0\nDEFAULT action=ALLOW\n" + text)
    except IpePolicyError:
        pass
