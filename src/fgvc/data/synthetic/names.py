"""Names: a pseudo-Latin taxonomy, stable per key."""

from __future__ import annotations

import numpy as np

from fgvc.data.synthetic.seeds import key_rng

_SYLLABLES = ["ar", "bel", "cor", "dra", "el", "fen", "gal", "hy", "is", "ka", "lum", "mor", "nax", "or",
              "pel", "quor", "ri", "sol", "tar", "ul", "ver", "xan", "yr", "zo", "bra", "cli", "dul", "phy"]
_EPITHETS = [("maculata", "Spotted"), ("striata", "Striped"), ("rubra", "Red"), ("minor", "Lesser"),
             ("major", "Greater"), ("borealis", "Northern"), ("australis", "Southern"),
             ("vernalis", "Spring"), ("autumnalis", "Autumn"), ("montana", "Mountain"),
             ("sylvatica", "Woodland"), ("palustris", "Marsh"), ("ornata", "Ornate"), ("pallida", "Pale"),
             ("nigra", "Black"), ("alba", "White"), ("fasciata", "Banded"), ("punctata", "Dotted"),
             ("lineata", "Lined"), ("virens", "Green")]


def _word(rng: np.random.Generator, syllables: int, suffix: str = "") -> str:
    return ("".join(rng.choice(_SYLLABLES, syllables)) + suffix).capitalize()


def unique_words(seed: int, domain: str, what: str, count: int, syllables: int,
                  suffix: str = "") -> list[str]:
    """Distinct words, the k-th depending only on keys <= k (prefix-stable when counts grow)."""
    out: list[str] = []
    for k in range(count):
        rng = key_rng(seed, domain, what, k)
        word = _word(rng, syllables, suffix)
        while word in out:
            word = _word(rng, syllables, suffix)
        out.append(word)
    return out


def epithets(seed: int, domain: str, genus: int, n: int) -> list[tuple[str, str]]:
    """Distinct (Latin epithet, English adjective) pairs for the species of one genus."""
    order = key_rng(seed, domain, "epithets", genus).permutation(len(_EPITHETS))
    return [(_EPITHETS[order[j % len(order)]][0] + ("" if j < len(order) else str(j // len(order))),
             _EPITHETS[order[j % len(order)]][1] + ("" if j < len(order) else f" {j // len(order) + 1}"))
            for j in range(n)]

