# The SIP core's one error type (DESIGN.md 5.6).
#
# .status is the SIP status a UAS would answer with (400, 413, 505, 513 ...),
# .reason says in words what was wrong; it becomes the reason phrase of that reply
# (RFC 3261 21.4: the phrase is free text), so it never holds CR or LF.


class SipError(Exception):
    # SipError(status, reason) or SipError(reason[, status]); status defaults to 400.
    def __init__(self, a, b=None):
        if isinstance(a, int):
            status, reason = a, b
        else:
            status, reason = b, a
        if status is None:
            status = 400
        if reason is None:
            reason = "Bad Request"
        if not isinstance(reason, str):
            reason = reason.decode()
        super().__init__(reason)
        self.status = status
        self.reason = reason
