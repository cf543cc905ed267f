"""Lint for firmware/: only modules the ESP32 port has, and sans-IO cores.

1. Every import in firmware/ is a module of the stock MicroPython ESP32 image (allowlist
   below, from the ESP32 port's module list and ../shared/peers/README.md) or sipling itself.
2. CPython-only names the ESP32 port lacks (socket.getsockname, time.monotonic, ...) are refused.
3. The sans-IO rule (DESIGN.md section 3): only sipling/shell, sipling/app.py and main.py may
   import socket, network, machine, time, asyncio, select, esp32 or os.
4. No dataclasses/enum/typing/abc/re in firmware (DESIGN.md section 5).
Exit 1 with one line per problem.
"""
import ast
import os
import sys

ESP32_MODULES = {
    "array", "asyncio", "binascii", "bluetooth", "btree", "builtins", "cmath", "collections",
    "cryptolib", "ucryptolib", "deflate", "errno", "esp", "esp32", "framebuf", "gc", "hashlib",
    "heapq", "io", "json", "machine", "math", "micropython", "network", "neopixel", "os",
    "platform", "random", "select", "socket", "ssl", "struct", "sys", "time", "uctypes",
    "vfs", "onewire", "dht", "espnow", "_thread", "binascii",
}
IO_MODULES = {"socket", "network", "machine", "time", "asyncio", "select", "esp32", "esp", "os", "vfs"}
BANNED = {"dataclasses", "enum", "typing", "abc", "re", "hmac", "logging"}
CPYTHON_ONLY_ATTRS = {
    ("socket", "getsockname"), ("time", "monotonic"), ("time", "perf_counter"),
    ("hashlib", "sha512"), ("hashlib", "sha384"), ("hashlib", "new"), ("os", "replace"),
    ("struct", "iter_unpack"), ("time", "time_ns"), ("bytes", "hex"),
}


def _io_allowed(rel):
    return rel.startswith("sipling/shell/") or rel in ("sipling/app.py", "main.py", "boot.py")


def check_file(path, rel):
    problems = []
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: our own package
                continue
            names = [node.module or ""]
        for full in names:
            top = full.split(".")[0]
            where = "%s:%d" % (rel, node.lineno)
            if top == "sipling":
                continue
            if top in BANNED:
                problems.append("%s: imports %s (not in the ESP32 image or banned by DESIGN.md 5)" % (where, full))
            elif top not in ESP32_MODULES:
                problems.append("%s: imports %s, which the ESP32 port does not have" % (where, full))
            elif top in IO_MODULES and not _io_allowed(rel):
                problems.append("%s: imports %s outside the shell (cores are sans-IO)" % (where, full))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in CPYTHON_ONLY_ATTRS:
                problems.append("%s:%d: %s.%s is CPython-only" % (rel, node.lineno, node.value.id, node.attr))
    return problems


def main(root):
    problems = []
    count = 0
    for d, _dirs, files in os.walk(root):
        for n in sorted(files):
            if n.endswith(".py"):
                p = os.path.join(d, n)
                count += 1
                problems += check_file(p, os.path.relpath(p, root))
    for p in problems:
        print("lint: " + p)
    print("lint: %d firmware files, %d problems" % (count, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "firmware"))
