# Choose a viper fast path from viper_sum.py where this port can run it, else the plain
# function. viper_sum only imports on MicroPython builds with the viper emitter (an .mpy
# compiled with -march for the board's arch); everywhere else the plain code runs.


def pick(name, plain):
    """viper_sum.<name> if it loads here, else plain."""
    import sys
    if sys.implementation.name == "micropython":
        try:
            from sipling.esp import viper_sum
            return getattr(viper_sum, name)
        except Exception:
            pass
    return plain
