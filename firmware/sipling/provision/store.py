# Key/config store with atomic replace (sans-IO: the filesystem is an injected object).
#
# The new content goes to <path>.new; commit() closes it, re-reads it to check its SHA-256,
# then renames it over <path>. littlefs and POSIX rename replace the target atomically, so
# a cut at any byte leaves either the old or the new complete file. Where rename refuses an
# existing target (FAT), the old file is first moved to <path>.old; recover() at boot
# repairs every state a cut can leave:
#   <path>.new left over       -> deleted (an unfinished or uncommitted transfer)
#   <path> missing, .old there -> .old renamed back (cut between the two renames)
#   <path> and .old both there -> .old deleted (cut after the second rename)
#
# fs object (sipling.shell.fs on the board, any stand-in in tests):
#   open(path, mode) -> file with read/write/close; rename(src, dst); remove(path);
#   exists(path) -> bool
import hashlib

_READ = 512


class StoreError(Exception):
    pass


def sha256_file(fs, path):
    """SHA-256 digest (32 bytes) of a file, read in small blocks."""
    h = hashlib.sha256()
    f = fs.open(path, "rb")
    try:
        while True:
            b = f.read(_READ)
            if not b:
                break
            h.update(b)
    finally:
        f.close()
    return h.digest()


class Store:
    def __init__(self, fs, path):
        self.fs = fs
        self.path = path
        self.tmp = path + ".new"
        self.old = path + ".old"
        self._f = None
        self._h = None
        self.size = 0

    def recover(self):
        """Boot-time repair (see the table above). Returns a short note for the log or None."""
        fs = self.fs
        note = None
        if fs.exists(self.tmp):
            fs.remove(self.tmp)
            note = "dropped unfinished %s" % self.tmp
        if fs.exists(self.old):
            if fs.exists(self.path):
                fs.remove(self.old)
            else:
                fs.rename(self.old, self.path)
                note = "restored %s" % self.path
        return note

    def read(self):
        """The committed content (bytes) or None."""
        if not self.fs.exists(self.path):
            return None
        f = self.fs.open(self.path, "rb")
        try:
            return f.read()
        finally:
            f.close()

    def fingerprint(self):
        """SHA-256 (32 bytes) of the committed content, or None when there is none."""
        if not self.fs.exists(self.path):
            return None
        return sha256_file(self.fs, self.path)

    def begin(self):
        """Start a new content in the temp file (an unfinished one is discarded)."""
        self.abort()
        self._f = self.fs.open(self.tmp, "wb")
        self._h = hashlib.sha256()
        self.size = 0

    def active(self):
        return self._f is not None

    def write(self, data):
        if self._f is None:
            raise StoreError("no transfer")
        n = self._f.write(data)
        if n is not None and n != len(data):
            raise StoreError("short write")
        self._h.update(data)
        self.size += len(data)

    def commit(self, expect):
        """Check the received bytes against `expect` (SHA-256), then replace atomically.

        Returns the digest of the file as read back from flash.
        """
        if self._f is None:
            raise StoreError("no transfer")
        f = self._f
        self._f = None
        got = self._h.digest()
        self._h = None
        f.close()
        if got != expect:
            self.fs.remove(self.tmp)
            raise StoreError("digest")
        if sha256_file(self.fs, self.tmp) != expect:
            self.fs.remove(self.tmp)
            raise StoreError("read back")
        self._replace()
        return expect

    def _replace(self):
        fs = self.fs
        try:
            fs.rename(self.tmp, self.path)
            return
        except OSError:
            if not fs.exists(self.path):
                raise
        # target exists and this filesystem will not replace it in one step
        fs.rename(self.path, self.old)
        fs.rename(self.tmp, self.path)
        fs.remove(self.old)

    def abort(self):
        if self._f is not None:
            try:
                self._f.close()
            except Exception:
                pass
            self._f = None
            self._h = None
        if self.fs.exists(self.tmp):
            self.fs.remove(self.tmp)
        self.size = 0
