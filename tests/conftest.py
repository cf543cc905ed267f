# pytest (CPython) set-up: install the MicroPython stand-ins before firmware imports.
import sipling_host.mpshim as _mpshim

_mpshim.install()
