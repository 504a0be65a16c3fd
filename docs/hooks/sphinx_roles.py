"""mkdocs hook: the docstrings' Sphinx roles (:func:`x`, :class:`~a.b.C`) shown as code.

mkdocstrings' numpy parser keeps ``:class:`~genrevision.features.ragged.Ragged``` as text followed by a code
span; this turns it into the code span alone, with Sphinx's meaning of ``~`` (the last component).
"""
import re

_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>")


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html, page, config, files):
    return _ROLE.sub(_code, html)
