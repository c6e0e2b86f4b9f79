"""The one parser of index lists with ranges: ``"0,3,5"``, ``"0-3,7"``, ``"60,62.5,70-72"``.

Used by every option that names components (``--fixed-components``,
``--components``, ``--group NAME=...``) or pitches (``--pitches``).
"""

from __future__ import annotations

import re

from dnmf.errors import DnmfUsageError

__all__ = ["parse_ranges"]

_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")


def parse_ranges(
    text: str, *, option: str, what: str = "component indices", example: str = "0,3,5 or 0-3",
    real: bool = False,
) -> list[float] | list[int]:  # fmt: skip
    """Numbers from a comma-separated list; ``a-b`` is every integer from a to b.

    Parameters
    ----------
    text : str
        What the user wrote.
    option : str
        How the message names the option (``--components``).
    what, example : str
        How the message names the values and shows a good list.
    real : bool, default=False
        Accept non-integer numbers (MIDI pitches) and return floats.

    Examples
    --------
    >>> parse_ranges("0-2,5", option="--components")
    [0, 1, 2, 5]
    >>> parse_ranges("60, 62.5, 70-71", option="--pitches", real=True)
    [60.0, 62.5, 70.0, 71.0]
    """
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = _RANGE.fullmatch(part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise DnmfUsageError(
                    f"{option} {text!r} holds the empty range {part!r}; write ranges low-high, "
                    "e.g. 0-3"
                )
            out.extend(range(a, b + 1))
            continue
        try:
            value = float(part) if real else int(part)
        except ValueError:
            raise DnmfUsageError(
                f"{option} {text!r} is not a list of {what}; pass e.g. {example}"
            ) from None
        out.append(value)
    if not out:
        raise DnmfUsageError(f"{option} {text!r} names nothing; pass e.g. {example}")
    return [float(v) for v in out] if real else [int(v) for v in out]
