"""The static HTML pages of the reports (evaluation, misclassified clips), from the Jinja2 templates in ``templates/``.

Values are escaped by Jinja2; HTML made elsewhere (a pandas table) is passed
as :class:`markupsafe.Markup`.  The web app's page has its own templates
(``webapp/templates``), rendered by Flask.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def render_page(template: str, **context) -> str:
    """The page ``templates/<template>`` rendered with ``context``."""
    return _environment().get_template(template).render(**context)
