"""One exception type for every user-facing problem, and one warning type for what the user should know but
may have meant.

The CLI prints ``MailnetError`` as a single line (``mailnet: error: ...``) instead of a traceback, so every
message must say *what* is wrong and *where* (file, key, modality).
"""


class MailnetError(Exception):
    """A problem with the user's input, files or configuration (not a bug in mailnet)."""


class DataError(MailnetError):
    """Missing, corrupt or inconsistent data."""


class ConfigError(MailnetError):
    """Unknown or invalid configuration keys and values."""


class ModelError(MailnetError):
    """Unknown model names or inconsistent model arguments."""


class MailnetWarning(UserWarning):
    """Something the user may not have meant (e.g. images upsampled from a smaller file); the CLI shows it as one
    line, ``mailnet: warning: ...``, and ``warnings.filterwarnings`` can silence it."""


def unknown_key_hint(key: object) -> str:
    """YAML reads ``{train:64}`` (no space after the colon) as one key ``'train:64'`` with no value: a common slip
    on the command line (``'data.subset={train:64}'``) that deserves its fix, not only 'unknown key'."""
    if isinstance(key, str) and ":" in key:
        name = key.split(":", 1)[0]
        return f" (YAML needs a space after the colon: write {name}: {key.split(':', 1)[1]})"
    return ""
