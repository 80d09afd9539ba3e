"""The report's sanity section draws the cascade (the maps the sanity check kept) for image explanations."""

from __future__ import annotations

import base64
import io
import re

import matplotlib.image as mpimg
import pytest

from conftest import make_cnn, rand
from lumos.methods.gradient.saliency import Saliency
from lumos.metrics.sanity import load_sanity_report, sanity_check
from lumos.report import build

ALT = "sanity check: the maps as layers are randomised"


def cascade_images(text: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="' + re.escape(ALT) + '"', text)


@pytest.fixture(scope="module")
def setup():
    model = make_cnn(0)
    x = rand(0, 3, 1, 8, 8)
    e = Saliency(model, progress=False).explain(x)
    return model, x, e


def test_report_draws_the_kept_cascade_maps(setup, tmp_path) -> None:
    model, x, e = setup
    report = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, keep_maps=2, progress=False)
    loaded = load_sanity_report(report.save(tmp_path / "sc.npz"))  # from a saved report too
    text = build([e], sanity=loaded, path=tmp_path / "r.html").read_text(encoding="utf-8")
    images = cascade_images(text)
    assert len(images) == 1
    pixels = mpimg.imread(io.BytesIO(base64.b64decode(images[0])), format="png")
    assert pixels.shape[1] > pixels.shape[0] and pixels[..., :3].var() > 0  # a row of maps, not blank
    caption = text[text.index(images[0]):].split("</figcaption>")[0]
    assert "every step" in caption and "spearman_abs similarity to the original" in caption


def test_report_without_kept_maps_has_no_cascade_figure(setup, tmp_path) -> None:
    model, x, e = setup
    report = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, keep_maps=0, progress=False)
    text = build([e], sanity=report, path=tmp_path / "r.html").read_text(encoding="utf-8")
    assert cascade_images(text) == []
    assert "sanity check: similarity as layers are randomised" in text  # the similarity curve is still there


def test_sanity_section_says_when_only_the_signs_changed(setup, tmp_path) -> None:
    import numpy as np

    from lumos.metrics import SanityReport, SanityRule
    from lumos.metrics.randomisation import RandomisationResult

    _, _, e = setup

    def result(method: str, magnitude: list[float], signed: list[float]) -> RandomisationResult:
        return RandomisationResult("cascading", method, ["fc2", "fc1"],
                                   {"spearman_abs": np.array([[v, v] for v in magnitude]),
                                    "spearman": np.array([[v, v] for v in signed])})

    report = SanityReport({"cascading": {"saliency": result("saliency", [0.77, 0.2], [0.04, 0.01]),
                                         "guided_backprop": result("guided_backprop", [0.9, 0.4], [0.85, 0.3]),
                                         "grad_cam": result("grad_cam", [0.3, 0.1], [0.3, 0.1])}},
                          SanityRule(), seed=0, n_samples=2)
    text = build([e], sanity=report, path=tmp_path / "r.html").read_text(encoding="utf-8")
    sanity = text[text.index('id="sanity"'):text.index('id="agreement"')]
    assert ("saliency: the magnitudes of its map stay similar as layers are randomised (max spearman_abs 0.77) "
            "while its signs change (max signed Spearman 0.04)") in sanity
    assert "guided_backprop: the magnitudes" not in sanity    # its signs stay too
    assert "grad_cam: the magnitudes" not in sanity           # it passes
