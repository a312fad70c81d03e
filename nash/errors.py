"""The one family of errors a user can cause.

Every module's user errors (a bad budget, a missing data file, a damaged checkpoint, an
invalid genotype, a bad option value) derive from `NashError`; the CLI catches this base (and
the morphism engine's own base, `morphisms.MorphismsError`) and prints the message as one line
with exit status 2. Anything else that escapes is a bug and is reported as such.
"""


class NashError(Exception):
    """An error the user can cause and fix; its message is one line that says how."""


class OptionError(NashError, ValueError):
    """An option or config value that cannot be used."""
