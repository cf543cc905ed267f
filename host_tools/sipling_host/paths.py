"""Where the checkout's folders are: the host tools run from the repository (`make setup`
installs them in editable mode), next to firmware/, boards/ and tests/interop/."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def firmware_dir():
    """The firmware/ folder of this checkout (env SIPLING_FIRMWARE overrides)."""
    return os.environ.get("SIPLING_FIRMWARE") or os.path.join(ROOT, "firmware")


def boards_dir():
    """The boards/ folder of this checkout (env SIPLING_BOARDS overrides)."""
    return os.environ.get("SIPLING_BOARDS") or os.path.join(ROOT, "boards")
