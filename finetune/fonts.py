"""Fonts for plots of users' own text: labels and names in a script that matplotlib's default font lacks."""

from __future__ import annotations

import functools


def font_families_for(texts: list[str]) -> list[str] | None:
    """matplotlib's ``font.family`` that draws every character of ``texts``: the default family, followed (when it
    lacks some) by the first installed font that has all of them, for matplotlib to fall back on glyph by glyph;
    None when no installed font has them."""
    from matplotlib import font_manager, rcParams

    default = list(rcParams["font.family"])
    needed = {ord(char) for text in texts for char in text if not char.isspace()}
    needed -= font_characters(font_manager.findfont(font_manager.FontProperties(family=default)))
    if not needed:
        return default
    for font in font_manager.fontManager.ttflist:
        # Last Resort maps every character to a box that names its block: it would hide the problem, not solve it
        if "LastResort" not in font.fname and needed <= font_characters(font.fname):
            return [*default, font.name]
    # matplotlib lists the fonts installed when it first ran; one installed since is found on disk.
    known = {font.fname for font in font_manager.fontManager.ttflist}
    for path in sorted(set(font_manager.findSystemFonts()) - known):
        if needed <= font_characters(path):
            from matplotlib.ft2font import FT2Font

            font_manager.fontManager.addfont(path)
            return [*default, FT2Font(path).family_name]
    return None


@functools.cache
def font_characters(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read
        return frozenset()
