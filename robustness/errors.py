"""The package's error types: each names the problem and the fix in its message.

The command line catches :class:`RobustnessError` and prints its message alone, so a
user never sees a traceback from deep inside torch for a mistake in their input.
"""


class RobustnessError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgument(RobustnessError, ValueError):
    """An argument outside its valid range or set of choices."""


class DataNotFoundError(RobustnessError, FileNotFoundError):
    """A dataset's files are not where they should be."""


class CheckpointError(RobustnessError, ValueError):
    """A checkpoint file that is corrupt, not a checkpoint, or for another model."""


class WriteError(RobustnessError, OSError):
    """A file or folder that cannot be written: no space left, read-only, or a path that is not a folder."""


class NonFiniteError(RobustnessError, ValueError):
    """A model whose weights or logits are NaN or infinite: every number measured from it would be meaningless."""
