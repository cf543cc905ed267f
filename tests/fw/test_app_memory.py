# Modules the app loads only when needed (boards/README.md "Memory"): the config validator
# is dropped after use, d-ver/digest and 3DES are imported only when their mechanism is used.
# Each test puts the modules it dropped back, so other test files keep the same objects.
import gc
import sys

import sipling
from sipling.app import unload


def _isolated(names, fn):
    saved = [(n, sys.modules.get(n)) for n in names]
    try:
        fn()
    finally:
        for n, m in saved:
            unload(n)
            if m is not None:
                sys.modules[n] = m
                pkg, _, leaf = n.rpartition(".")
                setattr(sys.modules[pkg], leaf, m)


def test_unload_forgets_module_and_package_attribute():
    def check():
        from sipling import config
        assert "sipling.config" in sys.modules
        unload("sipling.config")
        assert "sipling.config" not in sys.modules
        assert getattr(sipling, "config", None) is None
        gc.collect()
        from sipling import config as again  # a later import loads it afresh
        assert again is not config
        assert again.validate({})[1]  # and it works: an empty config has problems
    _isolated(("sipling.config",), check)


def test_unload_of_a_module_not_loaded_is_a_no_op():
    unload("sipling.no_such_module")
    assert "sipling.no_such_module" not in sys.modules


def test_agreement_and_cipher_do_not_import_digest_or_3des():
    names = ("sipling.secagree.agreement", "sipling.secagree.dver", "sipling.sip.digest",
             "sipling.esp.cipher", "sipling.esp.des3")

    def check():
        for name in names:
            unload(name)
        from sipling.secagree import agreement  # noqa: F401
        from sipling.esp import cipher
        assert "sipling.secagree.dver" not in sys.modules
        assert "sipling.sip.digest" not in sys.modules
        assert "sipling.esp.des3" not in sys.modules
        cipher.TdesCbc(bytes(range(24)), bytes(8))  # des-ede3-cbc agreed: now 3DES is loaded
        assert "sipling.esp.des3" in sys.modules
    _isolated(names, check)
