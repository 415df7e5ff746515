"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class FillgapError(Exception):
    """A problem with the user's input (file, mask, checkpoint, config), stated in one line."""


def did_you_mean(word: object, choices) -> str:
    """ " (did you mean 'X'?)" for the choice closest to a mistyped ``word``, "" when none is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
