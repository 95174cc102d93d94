"""Sphinx configuration for the sklaplace documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(the ``docs`` extra installs what it needs). The gallery runs every
``examples/plot_*.py``; each checks its own numbers with ``assert``, so a
failing example fails the build.
"""

import inspect
import os

import numpydoc.docscrape
from sphinx.util import logging
from threadpoolctl import threadpool_limits

import sklaplace
import sklaplace.exceptions
import sklaplace.metrics

os.environ.setdefault("MPLBACKEND", "Agg")

# The examples' networks are small, so their BLAS calls are many and small;
# on a machine whose cores are shared, multithreaded BLAS then spends more
# time synchronising than computing (see backends.rst). One BLAS thread keeps
# the gallery build fast and its timings stable. (joblib's worker processes,
# as in the grid-search example, get cpu_count() // n_jobs threads anyway.)
_BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")

project = "sklaplace"
author = "the sklaplace developers"
copyright = "the sklaplace developers"
release = sklaplace.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "gen_modules/backreferences", "**.ipynb_checkpoints"]
root_doc = "index"

# -- API reference -----------------------------------------------------------
autosummary_generate = True
# No "inherited-members" default: a non-string default would override the
# option the estimator's template sets (autosummary/estimator.rst).
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- Gallery -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only the plot_*.py scripts are gallery examples; examples/demo.py is the
    # README's demo: it is neither run nor listed.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|demo)\.py",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("sklaplace",),
    # A failing example (its asserts included) fails the build.
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "remove_config_comments": True,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklaplace {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []

# -- Every public name is documented, with an Examples section ---------------
PUBLIC_MODULES = [sklaplace, sklaplace.exceptions, sklaplace.metrics]


def _public_objects():
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{obj.__module__}.{obj.__qualname__}", name, obj


def _check_public_docstrings(app):
    """Warn (an error under ``-W``) for a public name that is not documented.

    Every class and function in the ``__all__`` of ``sklaplace``,
    ``sklaplace.exceptions`` and ``sklaplace.metrics`` needs a docstring
    summary and an Examples section, and a line in ``api.rst``; its
    Parameters section (and each public method's) lists the signature's
    parameters, in order.
    """
    logger = logging.getLogger(__name__)
    with open(os.path.join(app.srcdir, "api.rst"), encoding="utf-8") as f:
        api_words = set(f.read().split())
    for full_name, name, obj in _public_objects():
        parsed = numpydoc.docscrape.NumpyDocString(inspect.getdoc(obj) or "")
        if not parsed["Summary"]:
            logger.warning("%s has no docstring summary", full_name)
        if not parsed["Examples"]:
            logger.warning("%s has no Examples section in its docstring", full_name)
        if name not in api_words:
            logger.warning("%s is public but not listed in docs/api.rst", full_name)
        for where, function, doc in _documented_signatures(obj, parsed):
            documented = [p.name for p in doc["Parameters"]]
            signature = _parameter_names(function)
            if documented != signature:
                logger.warning(
                    "%s%s documents the parameters %s, its signature has %s",
                    full_name,
                    where,
                    documented,
                    signature,
                )


def _documented_signatures(obj, parsed):
    """Yield ``(where, function, parsed docstring)`` whose parameters must match.

    A function's own; a class's ``__init__`` against the class docstring, and
    every public method the package defines against its own docstring.
    Exceptions document no parameters.
    """
    if inspect.isfunction(obj):
        yield "", obj, parsed
        return
    if issubclass(obj, BaseException):
        return
    yield "", obj.__init__, parsed
    for name, method in inspect.getmembers(obj, inspect.isfunction):
        if not name.startswith("_") and method.__module__.startswith("sklaplace"):
            doc = numpydoc.docscrape.NumpyDocString(inspect.getdoc(method) or "")
            yield f".{name}", method, doc


def _parameter_names(function):
    """Return the names a numpydoc Parameters section lists, in order (no self)."""
    names = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        names.append(star + p.name)
    return names


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_{method}_request`` methods."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    """Register the docstring check and the member filter."""
    app.connect("builder-inited", _check_public_docstrings)
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
