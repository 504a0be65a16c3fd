"""The one template engine of genrevision's reports: Jinja2 over ``genrevision/templates``.

HTML templates (``*.html``) are autoescaped: every value a template prints is escaped unless
the code marks it safe, so a file or genre name can never become markup. Markdown templates
(``*.md``) are not (Markdown has no escaping of its own; its table cells escape ``|``
through the ``md_cell`` filter).
"""
from __future__ import annotations

from functools import lru_cache

__all__ = ["render"]


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|")


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # imported on first report: `import genrevision` stays light

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("genrevision", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md_cell"] = _md_cell
    return env


def render(name: str, **context) -> str:
    """The template ``genrevision/templates/<name>`` filled with ``context``."""
    return _environment().get_template(name).render(**context)
