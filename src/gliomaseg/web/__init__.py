"""Web viewer (``gliomaseg serve``): a local Gradio page that segments uploaded scans with a trained model.

Needs the optional ``web`` extra (``pip install -e ".[web]"``, part of ``make setup``). Gradio is
imported only when a page is built or served, so the pure modules here (uploads, analysis,
rendering, examples) import without it.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "Analysis": "gliomaseg.web.analysis",
    "Result": "gliomaseg.web.analysis",
    "CSS": "gliomaseg.web.app",
    "build_app": "gliomaseg.web.app",
    "write_downloads": "gliomaseg.web.downloads",
    "Example": "gliomaseg.web.examples",
    "NIFTI_SPACING": "gliomaseg.web.examples",
    "make_examples": "gliomaseg.web.examples",
    "VIEW": "gliomaseg.web.handlers",
    "Viewer": "gliomaseg.web.handlers",
    "discard": "gliomaseg.web.handlers",
    "DISPLAY_SIZE": "gliomaseg.web.render",
    "error_html": "gliomaseg.web.render",
    "overlay_image": "gliomaseg.web.render",
    "probability_image": "gliomaseg.web.render",
    "summary_html": "gliomaseg.web.render",
    "upscale": "gliomaseg.web.render",
    "DEFAULT_HOST": "gliomaseg.web.server",
    "DEFAULT_PORT": "gliomaseg.web.server",
    "ModelResolver": "gliomaseg.web.server",
    "no_login_warning": "gliomaseg.web.server",
    "DEFAULT_SESSION_BUDGET_MB": "gliomaseg.web.sessions",
    "SessionStore": "gliomaseg.web.sessions",
    "release": "gliomaseg.web.sessions",
    "return_memory_to_os": "gliomaseg.web.sessions",
    "serve": "gliomaseg.web.server",
    "read_truth": "gliomaseg.web.truth",
    "UNZIP_FACTOR": "gliomaseg.web.uploads",
    "Scan": "gliomaseg.web.uploads",
    "check_sizes": "gliomaseg.web.uploads",
    "load_upload": "gliomaseg.web.uploads",
    "max_zip_members": "gliomaseg.web.uploads",
    "unzip_upload": "gliomaseg.web.uploads",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.web.analysis import Analysis, Result
    from gliomaseg.web.app import CSS, build_app
    from gliomaseg.web.downloads import write_downloads
    from gliomaseg.web.examples import NIFTI_SPACING, Example, make_examples
    from gliomaseg.web.handlers import VIEW, Viewer, discard
    from gliomaseg.web.render import DISPLAY_SIZE, error_html, overlay_image, probability_image, summary_html, upscale
    from gliomaseg.web.server import DEFAULT_HOST, DEFAULT_PORT, ModelResolver, no_login_warning, serve
    from gliomaseg.web.sessions import DEFAULT_SESSION_BUDGET_MB, SessionStore, release, return_memory_to_os
    from gliomaseg.web.truth import read_truth
    from gliomaseg.web.uploads import UNZIP_FACTOR, Scan, check_sizes, load_upload, max_zip_members, unzip_upload
