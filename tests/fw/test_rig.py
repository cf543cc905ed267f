# The test rig itself: both interpreters find the firmware package and the vectors.
from util import raises, IS_MICROPYTHON


def test_firmware_package_imports():
    import sipling
    assert sipling.VERSION


def test_raises_helper_catches_and_fails():
    e = raises(ValueError, int, "x")
    assert isinstance(e, ValueError)
    try:
        raises(ValueError, int, "1")
    except AssertionError:
        return
    raise Exception("raises() passed a call that did not raise")


def test_const_importable():
    from micropython import const
    assert const(5) == 5
