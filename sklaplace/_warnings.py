"""Warnings attributed to the caller's code, not to sklaplace's internals.

A warning raised deep inside ``fit`` would otherwise name a line of
sklaplace (``stacklevel`` counts frames, and the depth of the call differs
from one warning, solver or refit path to the next). :func:`warn` walks up
the stack to the first frame outside the package, as pandas'
``find_stack_level`` does, so that the user sees the line of their own code
(or of the scikit-learn tool, such as ``Pipeline.fit``, that called ours).
Frames of ``sklearn/base.py`` are passed over too: its ``_fit_context``
decorator wraps every ``fit``, and its mixins (``score``) only forward.
"""

import os
import sys
import warnings

import sklearn.base

__all__ = ["warn"]

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


def warn(message, category):
    """Issue ``message`` as a ``category`` warning from the first outside frame.

    Parameters
    ----------
    message : str
        The warning's text.
    category : type
        A subclass of :class:`Warning`.
    """
    warnings.warn(message, category, stacklevel=_outside_stack_level())
