"""Opening the board's serial port with one-line errors a user can act on.

``open_port(url)`` uses pyserial's ``serial_for_url`` (so tests may pass ``loop://`` or a pty
path) and turns the usual failures into :class:`UserError`: port missing, busy (another
program holds it), permission denied (the dialout group).
"""
import errno
import os

import serial

from .errors import UserError

BAUD = 115200


def _classify(port, exc):
    err = getattr(exc, "errno", None)
    text = str(exc)
    if err == errno.ENOENT or "No such file" in text or "could not open port" in text and not os.path.exists(port):
        return UserError("port %s not found; is the board plugged in? "
                         "(list ports: python -m serial.tools.list_ports)" % port)
    if err in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return UserError("permission denied on %s; add yourself to the dialout group "
                         "(sudo usermod -aG dialout $USER, then log in again)" % port)
    if err in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower():
        return UserError("port %s is busy; close the other program using it "
                         "(sipling logs, mpremote, screen, a serial monitor) and try again" % port)
    return UserError("cannot open %s: %s" % (port, text))


def open_port(port, baudrate=BAUD, timeout=0.1, exclusive=True):
    """An open pyserial port; UserError with what to do when it cannot be opened."""
    if not port:
        raise UserError("no port given; pass --port (for example /dev/ttyUSB0)")
    kw = {"baudrate": baudrate, "timeout": timeout, "write_timeout": 5}
    if "://" not in port:
        kw["exclusive"] = exclusive
    try:
        return serial.serial_for_url(port, **kw)
    except (serial.SerialException, OSError, ValueError) as e:
        raise _classify(port, e) from None


def port_present(port):
    """True when the port path exists (URLs always count as present)."""
    return "://" in port or os.path.exists(port)
