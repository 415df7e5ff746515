"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class FillgapError(Exception):
    """A problem with the user's input (file, mask, checkpoint, config), stated in one line."""
