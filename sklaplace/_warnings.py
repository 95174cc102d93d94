"""Warnings attributed to the caller's code, not to sklaplace's internals.

A warning raised deep inside ``fit`` would otherwise name a line of
sklaplace (``stacklevel`` counts frames, and the depth of the call differs
from one warning, solver or refit path to the next). :func:`warn` walks up
the stack to the first frame outside the package, as pandas'
``find_stack_level`` does, so that the user sees the line of their own code
(or of the scikit-learn tool, such as ``Pipeline.fit``, that called ours).
Frames of ``sklearn/base.py`` are passed over too: its ``_fit_context``
decorator wraps every ``fit``, and its mixins (``score``) only forward.

A fit tries several refits and keeps one: :func:`recorded` holds back the
warnings :func:`warn` issues meanwhile, so that only the kept refit's reach
the user (issued again by :func:`warn`), and :func:`ignored` drops a
category. Both act on the running thread (a context variable): the
process-wide ``warnings.catch_warnings`` they replace is not thread-safe
before Python 3.14, and fits in several threads had left its filters
(``"always"`` for every warning, ``"ignore"`` for ConvergenceWarning)
installed for the whole process and lost other threads' warnings.
"""

import contextvars
import os
import sys
import warnings
from contextlib import contextmanager
from typing import NamedTuple

import sklearn.base

__all__ = ["RecordedWarning", "ignored", "recorded", "warn"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SKLEARN_BASE = os.path.abspath(sklearn.base.__file__)


def _passed_over(filename):
    return filename.startswith(_PACKAGE_DIR) or filename == _SKLEARN_BASE


def _outside_stack_level():
    """``stacklevel`` of the first frame :func:`warn` should name."""
    frame, level = sys._getframe(2), 2  # 1 is warn itself; 2 is its caller
    while frame is not None and _passed_over(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


class RecordedWarning(NamedTuple):
    """A warning :func:`recorded` held back: its text and category."""

    message: str
    category: type


# Innermost last: (list the warnings go to or None, categories dropped).
_HANDLERS = contextvars.ContextVar("sklaplace_warning_handlers", default=())


@contextmanager
def _handling(caught, dropped):
    token = _HANDLERS.set((*_HANDLERS.get(), (caught, dropped)))
    try:
        yield caught
    finally:
        _HANDLERS.reset(token)


def recorded():
    """Hold back the warnings :func:`warn` issues in this thread and context.

    Yields
    ------
    list of RecordedWarning
        The warnings held back, in order (those of an inner
        :func:`recorded` go to its own list).
    """
    return _handling([], ())


def ignored(*categories):
    """Drop the warnings of ``categories`` (subclasses included) :func:`warn` issues.

    Other categories go on to an enclosing :func:`recorded`, or to the user.

    Parameters
    ----------
    *categories : type
        Subclasses of :class:`Warning`.
    """
    return _handling(None, categories)


def warn(message, category):
    """Issue ``message`` as a ``category`` warning from the first outside frame.

    Held back or dropped instead inside :func:`recorded` or :func:`ignored`.

    Parameters
    ----------
    message : str
        The warning's text.
    category : type
        A subclass of :class:`Warning`.
    """
    for caught, dropped in reversed(_HANDLERS.get()):
        if issubclass(category, dropped):
            return
        if caught is not None:
            caught.append(RecordedWarning(str(message), category))
            return
    warnings.warn(message, category, stacklevel=_outside_stack_level())
