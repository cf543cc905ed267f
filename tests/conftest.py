# pytest (CPython) set-up: install the MicroPython stand-ins before firmware imports.
import os

import sipling_host.mpshim as _mpshim

_mpshim.install()

try:
    from hypothesis import settings as _hs
except ImportError:  # firmware tests do not need hypothesis
    _hs = None

if _hs is not None:
    # `make test` must give the same verdict on every run: property tests use a fixed
    # seed sequence. HYPOTHESIS_PROFILE=explore draws fresh examples (and finds new bugs).
    _hs.register_profile("ci", derandomize=True, database=None)
    _hs.register_profile("explore", derandomize=False)
    _hs.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
