"""2016 keyring trust thread: when trust is decided. Linux 4.4 decided it once, when a key
was created (KEY_FLAG_TRUSTED), and key_link only tested the flag; the 2016 patch set
(4.6) moved the decision to __key_link(), so the restriction runs at every link
(restrict_link_by_ima_mok for .ima). Each difference below flips between the two."""

from __future__ import annotations

import pytest

from imasim.errors import KeyRejectedError
from imasim.keys.models import Linux44Trust, linux_4_6_keyrings
from pki import pki


def _admitted(fn: object, *args: object) -> bool:
    try:
        fn(*args)  # type: ignore[operator]
    except KeyRejectedError:
        return False
    return True


def test_a_key_trusted_when_created_stays_trusted_in_4_4_but_not_in_4_6() -> None:
    vendor, owner_ca, app = pki()["root"], pki()["inter"], pki()["chained"]
    old = Linux44Trust.boot([vendor.as_key()])
    old.add(".ima_mok", owner_ca.as_key())
    key = old.create(app.as_key())            # trusted now: the owner's CA vouches
    old.rings[".ima_mok"].unlink(owner_ca.as_key())  # the owner's CA is withdrawn
    assert _admitted(old.link, ".ima", key)   # 4.4: the flag still says trusted

    new = linux_4_6_keyrings([vendor.as_key()])
    new[".ima_mok"].add(owner_ca.as_key())
    new[".ima_mok"].unlink(owner_ca.as_key())
    assert not _admitted(new[".ima"].add, app.as_key())  # 4.6: re-checked at link: ENOKEY


def test_a_key_created_untrusted_stays_untrusted_in_4_4() -> None:
    vendor, owner_ca, app = pki()["root"], pki()["inter"], pki()["chained"]
    old = Linux44Trust.boot([vendor.as_key()])
    key = old.create(app.as_key())            # nothing vouches yet
    old.add(".ima_mok", owner_ca.as_key())    # the CA arrives afterwards
    assert not _admitted(old.link, ".ima", key)

    new = linux_4_6_keyrings([vendor.as_key()])
    new[".ima_mok"].add(owner_ca.as_key())
    assert _admitted(new[".ima"].add, app.as_key())


@pytest.mark.parametrize("era", ["4.4", "4.6"])
def test_ima_mok_was_self_allowing_only_in_4_4(era: str) -> None:
    """Howells: "the .ima_mok is not self-allowing" in the commit message, "though that's
    not what the code change actually does" (4.4/4.5: an .ima_mok key vouches for .ima_mok)."""
    vendor, owner_ca, sub_ca = pki()["root"], pki()["inter"], pki()["chained"]
    if era == "4.4":
        old = Linux44Trust.boot([vendor.as_key()])
        old.add(".ima_mok", owner_ca.as_key())
        assert _admitted(old.add, ".ima_mok", sub_ca.as_key())
    else:
        new = linux_4_6_keyrings([vendor.as_key()])
        new[".ima_mok"].add(owner_ca.as_key())
        assert not _admitted(new[".ima_mok"].add, sub_ca.as_key())


def test_both_eras_refuse_strangers_and_keep_the_system_keyring_closed() -> None:
    vendor, stranger = pki()["root"], pki()["stranger"]
    old = Linux44Trust.boot([vendor.as_key()])
    new = linux_4_6_keyrings([vendor.as_key()])
    assert not _admitted(old.add, ".ima", stranger.as_key())
    assert not _admitted(new[".ima"].add, stranger.as_key())
    assert not _admitted(old.add, ".system_keyring", pki()["leaf"].as_key())
    assert not _admitted(new[".system_keyring"].add, pki()["leaf"].as_key())
    assert _admitted(old.add, ".ima", pki()["leaf"].as_key())  # vendor-signed: both
    assert _admitted(new[".ima"].add, pki()["leaf"].as_key())
