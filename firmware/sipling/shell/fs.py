# The real filesystem object for sipling.provision.store (os/vfs on the board and on the
# unix port). Paths are used as given: relative to the current directory, which is "/"
# on the board and the simulated board's directory on the unix port.
import os


def open(path, mode="rb"):  # noqa: A001 (the store calls fs.open)
    import builtins
    return builtins.open(path, mode)


def rename(src, dst):
    os.rename(src, dst)


def remove(path):
    os.remove(path)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def sync():
    # littlefs commits on close; os.sync exists on some ports only
    s = getattr(os, "sync", None)
    if s is not None:
        s()
