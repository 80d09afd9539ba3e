"""ImageNet-1k class names for the photos demo, read from the ``timm`` wheel's data files without importing timm.

``timm`` (Apache-2.0) ships ``timm/data/_info/imagenet_synsets.txt`` (the 1,000 WordNet synset ids in the class
order every ImageNet-1k classifier uses: index 0 = ``n01440764`` "tench", ..., 281 = ``n02123045`` "tabby") and
``imagenet_synset_to_lemma.txt`` (synset id, TAB, comma-separated lemmas). The short name of class ``i`` is the
first lemma of its synset ("tabby" for "tabby, tabby cat"); where two classes share a first lemma ("crane" the
bird and the machine, "maillot" twice) the next lemma is used when it is unique, else ``"<lemma> (class i)"``,
so every name is unique.

timm declares torchvision (which breaks imports here), so it is installed with ``pip install --no-deps
timm``; importing timm is never needed: the files are located with ``importlib.util.find_spec``. Without
timm the demo falls back to ``"class i"`` and says so (:func:`imagenet_class_names` returns the reason).
"""

from __future__ import annotations

from collections import Counter

from .cases import package_file

N_CLASSES = 1000
INFO = ("data", "_info")


def short_names(synsets: list[str], lemmas: dict[str, str]) -> list[str]:
    """One short, unique readable name per synset (see the module doc for the rule)."""
    options = [[w.strip() for w in lemmas[s].split(",") if w.strip()] or [s] for s in synsets]
    first = Counter(o[0] for o in options)
    names = []
    for i, words in enumerate(options):
        if first[words[0]] == 1:
            names.append(words[0])
        elif len(words) > 1 and first[words[1]] == 0:
            names.append(words[1])
        else:
            names.append(f"{words[0]} (class {i})")
    return names


def load_timm_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in class order, from timm's data files (raises when timm is missing)."""
    synsets = package_file("timm", *INFO, "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    if len(synsets) != N_CLASSES:
        raise ValueError(f"timm's imagenet_synsets.txt lists {len(synsets)} synsets, expected {N_CLASSES}")
    lemmas: dict[str, str] = {}
    for line in package_file("timm", *INFO, "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines():
        synset, _, words = line.partition("\t")
        lemmas[synset] = words
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        raise ValueError(f"timm's imagenet_synset_to_lemma.txt has no lemma for {missing[:3]}")
    return short_names(synsets, lemmas)


def imagenet_class_names() -> tuple[list[str], str]:
    """``(names, note)``: the class names and ``""``, or ``["class 0", ...]`` and why names are missing."""
    try:
        return load_timm_names(), ""
    except (ModuleNotFoundError, FileNotFoundError, ValueError, OSError) as exc:
        return ([f"class {i}" for i in range(N_CLASSES)],
                f"ImageNet class names unavailable ({exc}); classes are shown by index. Install them with "
                "pip install --no-deps timm")
