"""The 4.4-era keyrings and the three trust models of 2016, side by side."""

from __future__ import annotations

import pytest

from imasim.errors import KeyRejectedError
from imasim.keys.models import linux_4_4_keyrings, trust_model
from pki import ec_key, make_cert, pki


def admits(model: str, key_name: str, **kw: object) -> bool:
    rings = trust_model(model, vendor_keys=[pki()["root"].as_key()],  # type: ignore[arg-type]
                        owner_keys=[pki()["inter"].as_key()], **kw)  # type: ignore[arg-type]
    key = (make_cert("third-party sub key", ec_key("sub"), issuer=pki()["chained"]).as_key()
           if key_name == "sub" else pki()[key_name].as_key())
    try:
        if key_name == "sub":
            rings[".ima"].add(pki()["chained"].as_key())
        rings[".ima"].add(key)
    except KeyRejectedError:
        return False
    return True


@pytest.mark.parametrize(("model", "expected"), [
    # key:            vendor-signed  owner-signed  sub-key of owner-signed  stranger
    ("vendor",           (True,         False,        False,                   False)),
    ("owner-delegated",  (True,         True,         False,                   False)),
    ("owner-authorised", (False,        True,         True,                    False)),
])
def test_what_each_model_admits(model: str, expected: tuple[bool, ...]) -> None:
    got = tuple(admits(model, k) for k in ("leaf", "chained", "sub", "stranger"))
    assert got == expected


def test_linux_4_4_layout() -> None:
    rings = linux_4_4_keyrings([pki()["root"].as_key()])
    assert set(rings) == {".system_keyring", ".ima_mok", ".ima"}
    with pytest.raises(KeyRejectedError):
        rings[".system_keyring"].add(pki()["leaf"].as_key())  # closed after boot
    rings[".ima_mok"].add(pki()["inter"].as_key())  # a CA signed by the vendor
    with pytest.raises(KeyRejectedError):
        rings[".ima_mok"].add(pki()["stranger"].as_key())
    rings[".ima"].add(pki()["chained"].as_key())  # signed by the MOK CA
    events = rings[".ima"].log.events
    assert events[-1].keyring == ".ima" and events[-1].admitted
    # 4.5's x509_validate_trust: an .ima_mok key also makes a key trusted for .ima_mok
    rings[".ima_mok"].add(pki()["chained"].as_key())
    assert any(e.keyring == ".ima_mok" and not e.admitted for e in events)
