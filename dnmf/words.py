"""Small helpers for messages people read: ``1 file`` / ``2 files``, ``a`` / ``an``."""

from __future__ import annotations

__all__ = ["count", "with_article"]


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes.

    Examples
    --------
    >>> count(1, "file"), count(2, "file"), count(0, "worker")
    ('1 file', '2 files', '0 workers')
    >>> count(2, "activations", "activations")
    '2 activations'
    """
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def with_article(word: str) -> str:
    """``'a corpus'``, ``'an activations'``: the indefinite article before ``word``.

    Examples
    --------
    >>> with_article("activations store"), with_article("model")
    ('an activations store', 'a model')
    """
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
