"""The one exception type the CLI turns into a single line on stderr."""


class NeurosearchError(Exception):
    """A user-facing error: bad input, missing files, unavailable services. Message is one line."""
