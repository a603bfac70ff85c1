"""Shared helpers for the lessons: device, command line, data, reporting.

Only what three or more lessons need lives here; every idea a lesson teaches is written out in
the lesson itself.
"""


class LessonError(Exception):
    """A problem the student can fix (bad data file, missing checkpoint, ...).

    A lesson run from the command line prints it as one line, `error: ...`, and exits with 1.
    """
