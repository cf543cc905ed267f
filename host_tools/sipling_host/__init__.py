"""sipling host tools: image, flash, provision, logs and the proxy-side edge (CPython)."""
from . import mpshim

# The firmware cores import `micropython` (for const) and `cryptolib`; under CPython
# those come from mpshim, installed before any firmware module is imported.
mpshim.install()
