"""The one error type of the host tools: its message is the whole line the user sees."""


class UserError(Exception):
    """A mistake or condition the user can fix; printed as `sipling: <msg>`, exit 1."""
