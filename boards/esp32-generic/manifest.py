# Frozen-image manifest for board "esp32-generic" (MicroPython ports/esp32, ESP-IDF 5.x).
#
# Freezes the sipling package into the firmware as bytecode so it costs no filesystem
# space and imports without parsing. main.py, board.json and the device config
# (/sipling.json) stay on the filesystem: `sipling image --board esp32-generic` and
# `sipling provision` put them there.
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=$SIPLING/boards/esp32-generic/manifest.py
#
# Relative paths below are resolved against this file's directory (manifestfile.py).

# The port's own frozen modules (_boot.py, inisetup, neopixel, ...), as the stock image has.
include("$(PORT_DIR)/boards/manifest.py")

# The device package, from firmware/sipling in this checkout.
package("sipling", base_path="../../firmware")
