# Wi-Fi station bring-up on the board (network.WLAN), with retries and clear log lines.
# On the unix port there is no `network` module: connect() is a no-op that says so.
import time

from .. import log

_STATUS = {1000: "idle", 1001: "connecting", 202: "wrong password", 201: "network not found",
           203: "association failed", 200: "beacon timeout", 204: "handshake timeout", 1010: "got ip"}


def connect(cfg, attempts=5, timeout_ms=15000):
    """Returns our IPv4 address (str), or None on the unix port. Raises OSError after
    `attempts` failures, each logged with the reason the driver gives."""
    try:
        import network
    except ImportError:
        log.info("wifi", "no network module (unix port): using the host's network")
        return None
    w = cfg.get("wifi")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        ip = wlan.ifconfig()[0]
        log.info("wifi", "already connected, address %s" % ip)
        return ip
    if not w:
        raise OSError("no wifi settings in the config; add \"wifi\": {\"ssid\": ..., \"password\": ...}")
    for n in range(1, attempts + 1):
        log.info("wifi", "connecting to %s (attempt %d of %d)" % (w["ssid"], n, attempts))
        try:
            wlan.connect(w["ssid"], w["password"])
        except OSError as e:
            log.warn("wifi", "connect call failed: %s" % e)
        t0 = time.ticks_ms()
        while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
            st = wlan.status()
            if st in (201, 202, 203):
                break
            time.sleep_ms(200)
        if wlan.isconnected():
            ip = wlan.ifconfig()[0]
            log.info("wifi", "connected to %s, address %s" % (w["ssid"], ip))
            return ip
        st = wlan.status()
        log.warn("wifi", "not connected: %s" % _STATUS.get(st, "status %s" % st))
        wlan.disconnect()
        time.sleep_ms(1000 * n)
    raise OSError("wifi: could not join %s after %d attempts" % (w["ssid"], attempts))
