"""The course's plumbing: flags, device choice, data and stand-ins, outputs, the torchtext API.

Nothing a lesson teaches lives here; every idea is written out in the lesson itself.
"""


class LessonError(Exception):
    """A problem the student can fix (a bad data file, a missing checkpoint, ...): a script
    prints it as one line, `error: ...`, and exits with status 1."""
