"""Fitted tree ensembles read into one array representation: :class:`TreeEnsemble`.

Supported models (recognised by their class name and module, so XGBoost and LightGBM are never imported
unless the model comes from them):

- scikit-learn ``DecisionTreeRegressor/Classifier``, ``RandomForestRegressor/Classifier``,
  ``ExtraTreesRegressor/Classifier`` (explained output: the prediction, for classifiers the class
  probabilities of ``predict_proba``: the average of the trees' leaf class fractions);
- scikit-learn ``GradientBoostingRegressor/Classifier`` (explained output: the raw prediction, for classifiers
  the log-odds / raw margin of ``decision_function``; one output for binary problems, the margin of class 1);
- XGBoost ``Booster``, ``XGBRegressor``, ``XGBClassifier`` (``gbtree``; explained output: the raw margin,
  ``predict(..., output_margin=True)``);
- LightGBM ``Booster``, ``LGBMRegressor``, ``LGBMClassifier`` (explained output: the raw score,
  ``predict(..., raw_score=True)``).

Probabilities of boosted classifiers are a non-linear function of the trees' sum and have no exact TreeSHAP
decomposition: explain ``model.predict_proba`` with ``exact_shap`` / ``kernel_shap`` for them.

Representation (all trees concatenated, node ids global): ``left``/``right`` child ids (-1 at leaves),
``feature`` (-1 at leaves), ``threshold``, ``value`` (leaf values, one column per output), ``cover``
(training sample weight or hessian sum reaching the node), ``default_left`` (where missing values go),
``missing_zero`` (LightGBM ``missing_type=Zero``: zeros count as missing), ``roots`` and ``tree_output`` (the
output a tree adds to, -1 = all outputs). A sample goes left when ``x < threshold`` (``strict``, XGBoost) or
``x <= threshold`` (scikit-learn, LightGBM), compared in ``input_dtype`` (float32 for scikit-learn and
XGBoost, as they do). The model's output is ``offset + sum of the trees' leaf values``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UnsupportedModelError, describe_value

SUPPORTED = (
    "scikit-learn DecisionTree/RandomForest/ExtraTrees/GradientBoosting Regressor or Classifier, "
    "xgboost Booster/XGBRegressor/XGBClassifier (gbtree), lightgbm Booster/LGBMRegressor/LGBMClassifier"
)
_SK_SINGLE = {"DecisionTreeRegressor", "DecisionTreeClassifier", "ExtraTreeRegressor", "ExtraTreeClassifier"}
_SK_FOREST = {"RandomForestRegressor", "RandomForestClassifier", "ExtraTreesRegressor", "ExtraTreesClassifier"}
_SK_BOOST = {"GradientBoostingRegressor", "GradientBoostingClassifier"}
_XGB = {"Booster", "XGBModel", "XGBRegressor", "XGBClassifier"}
_LGB = {"Booster", "LGBMModel", "LGBMRegressor", "LGBMClassifier"}


@dataclass
class TreeEnsemble:
    """Trees of an ensemble in flat arrays (see the module doc); ``f(x) = offset + sum of leaf values``."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray  # (n_nodes, n_outputs)
    cover: np.ndarray
    default_left: np.ndarray
    missing_zero: np.ndarray
    roots: np.ndarray
    tree_output: np.ndarray
    offset: np.ndarray  # (n_outputs,)
    n_features: int
    strict: bool
    input_dtype: type
    kind: str  # "sklearn", "xgboost", "lightgbm"
    output_name: str

    @property
    def n_outputs(self) -> int:
        return int(self.value.shape[1])

    @property
    def n_trees(self) -> int:
        return int(len(self.roots))

    def as_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded to the dtype the model compares in, as float64 (thresholds are float64)."""
        return np.asarray(x).astype(self.input_dtype).astype(np.float64, copy=False)

    def go_left(self, x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Whether rows ``x`` (n, d) go to the left child at internal ``nodes``: (n, len(nodes)) bool."""
        cols = self.as_input(x)[:, self.feature[nodes]]
        thr = self.threshold[nodes]
        missing = np.isnan(cols)
        zero_missing = self.missing_zero[nodes]
        if zero_missing.any():
            missing = missing | (zero_missing[None, :] & (np.abs(np.nan_to_num(cols)) <= 1e-35))
        left = cols < thr if self.strict else cols <= thr
        return np.where(missing, self.default_left[nodes][None, :], left)

    def leaf_of(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of ``x`` reaches in each tree: (n, n_trees) global node ids."""
        node = np.broadcast_to(self.roots, (x.shape[0], self.n_trees)).copy()
        rows = np.arange(x.shape[0])[:, None]
        x = self.as_input(x)
        while True:
            internal = self.left[node] >= 0
            if not internal.any():
                return node
            feat = np.where(internal, self.feature[node], 0)
            cols = x[rows, feat]
            thr = self.threshold[node]
            missing = np.isnan(cols) | (self.missing_zero[node] & (np.abs(np.nan_to_num(cols)) <= 1e-35))
            left = np.where(missing, self.default_left[node], cols < thr if self.strict else cols <= thr)
            node = np.where(internal, np.where(left, self.left[node], self.right[node]), node)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The explained output ``offset + sum of leaf values``: (n, n_outputs) float64."""
        leaves = self.leaf_of(x)
        out = np.tile(self.offset, (x.shape[0], 1))
        for k in range(self.n_outputs):
            trees = (self.tree_output == k) | (self.tree_output < 0)
            out[:, k] += self.value[leaves[:, trees], k].sum(1)
        return out

    def select(self, trees: np.ndarray, output: int) -> TreeEnsemble:
        """The sub-ensemble of ``trees`` (indices) with leaf values of ``output`` only (node ids relabelled)."""
        sizes = np.diff(np.append(self.roots, len(self.left)))
        starts, counts = self.roots[trees], sizes[trees]
        nodes = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)])
        new_id = np.full(len(self.left), -1, dtype=np.int64)
        new_id[nodes] = np.arange(len(nodes))
        relabel = lambda a: np.where(a >= 0, new_id[np.maximum(a, 0)], -1)  # noqa: E731
        return TreeEnsemble(
            relabel(self.left[nodes]), relabel(self.right[nodes]), self.feature[nodes], self.threshold[nodes],
            self.value[nodes, output][:, None], self.cover[nodes], self.default_left[nodes],
            self.missing_zero[nodes], np.cumsum(np.append(0, counts[:-1])), np.full(len(trees), 0),
            self.offset[output:output + 1], self.n_features, self.strict, self.input_dtype, self.kind,
            self.output_name,
        )


# ------------------------------------------------------------------ detection
def model_family(model: Any) -> str | None:
    """``"sklearn"``, ``"xgboost"``, ``"lightgbm"`` or ``None``, from the class hierarchy's names (no imports)."""
    for klass in type(model).__mro__:
        module, name = klass.__module__ or "", klass.__name__
        if module.startswith("sklearn.") and name in _SK_SINGLE | _SK_FOREST | _SK_BOOST:
            return "sklearn"
        if module.startswith("xgboost") and name in _XGB:
            return "xgboost"
        if module.startswith("lightgbm") and name in _LGB:
            return "lightgbm"
    return None


def check_supported(model: Any, *, owner: str) -> str:
    """The model's family, or an :class:`UnsupportedModelError` naming the supported models."""
    family = model_family(model)
    if family is None:
        raise UnsupportedModelError(
            f"{owner}: model must be a fitted tree ensemble ({SUPPORTED}), got {describe_value(model)}; "
            f"explain other models with exact_shap, kernel_shap or permutation_shap"
        )
    return family


def read_ensemble(model: Any, *, owner: str) -> TreeEnsemble:
    """Read a fitted tree model into a :class:`TreeEnsemble` (see the module doc for the explained output)."""
    family = check_supported(model, owner=owner)
    reader = {"sklearn": _read_sklearn, "xgboost": _read_xgboost, "lightgbm": _read_lightgbm}[family]
    try:
        return reader(model, owner)
    except (AttributeError, KeyError) as exc:
        raise UnsupportedModelError(f"{owner}: could not read the trees of {type(model).__name__} (is it fitted?): "
                                    f"{type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------ assembling
class _Builder:
    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.n = 0

    def add(self, left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
            value: np.ndarray, cover: np.ndarray, default_left: np.ndarray, output: int,
            missing_zero: np.ndarray | None = None) -> None:
        leaf = left < 0
        self.parts.append({
            "left": np.where(leaf, -1, left + self.n), "right": np.where(leaf, -1, right + self.n),
            "feature": np.where(leaf, -1, feature).astype(np.int64),
            "threshold": np.where(leaf, 0.0, threshold).astype(np.float64),
            "value": np.asarray(value, dtype=np.float64).reshape(len(left), -1),
            "cover": np.asarray(cover, dtype=np.float64), "default_left": np.asarray(default_left, dtype=bool),
            "missing_zero": np.zeros(len(left), bool) if missing_zero is None else missing_zero,
            "root": np.array([self.n]), "output": np.array([output]),
        })
        self.n += len(left)

    def build(self, offset: np.ndarray, n_features: int, *, strict: bool, input_dtype: type, kind: str,
              output_name: str, n_outputs: int) -> TreeEnsemble:
        cat = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0] if k != "value"}
        values = []
        for p in self.parts:
            v = p["value"]
            if v.shape[1] == 1 and n_outputs > 1:  # a scalar-leaf tree of one output of a multi-output booster
                full = np.zeros((len(v), n_outputs))
                full[:, p["output"][0]] = v[:, 0]
                v = full
            values.append(v)
        return TreeEnsemble(
            cat["left"].astype(np.int64), cat["right"].astype(np.int64), cat["feature"], cat["threshold"],
            np.concatenate(values), cat["cover"], cat["default_left"], cat["missing_zero"],
            cat["root"].astype(np.int64), cat["output"].astype(np.int64), np.asarray(offset, dtype=np.float64),
            int(n_features), strict, input_dtype, kind, output_name,
        )


def _read_sklearn(model: Any, owner: str) -> TreeEnsemble:
    name = next(k.__name__ for k in type(model).__mro__ if k.__name__ in _SK_SINGLE | _SK_FOREST | _SK_BOOST)
    d = int(model.n_features_in_)
    builder = _Builder()
    classifier = name.endswith("Classifier")
    if name in _SK_BOOST:
        init = model.init_
        if isinstance(init, str) and init == "zero":
            offset = np.zeros(model.estimators_.shape[1])
        elif type(init).__name__ in ("DummyClassifier", "DummyRegressor"):
            offset = np.asarray(model._raw_predict_init(np.zeros((1, d), dtype=np.float32)), dtype=np.float64)[0]
        else:
            raise UnsupportedModelError(f"{owner}: GradientBoosting with a custom init estimator "
                                        f"({type(init).__name__}) is not supported; use init=None or 'zero'")
        k_out = model.estimators_.shape[1]
        for stage in model.estimators_:
            for k, est in enumerate(stage):
                t = est.tree_
                _add_sklearn_tree(builder, t, t.value[:, 0, :1] * model.learning_rate, k if k_out > 1 else 0)
        output = "raw margin (log-odds; decision_function)" if classifier else "prediction"
        return builder.build(offset, d, strict=False, input_dtype=np.float32, kind="sklearn",
                             output_name=output, n_outputs=k_out)
    trees = model.estimators_ if name in _SK_FOREST else [model]
    scale = 1.0 / len(trees)
    n_outputs = 0
    for est in trees:
        t = est.tree_
        if t.n_outputs != 1:
            raise UnsupportedModelError(f"{owner}: multi-output trees ({t.n_outputs} outputs) are not supported")
        value = t.value[:, 0, :]
        if classifier:
            sums = value.sum(1, keepdims=True)
            value = value / np.where(sums > 0, sums, 1.0)
        n_outputs = value.shape[1]
        _add_sklearn_tree(builder, t, value * scale, -1)
    output = "class probability (predict_proba)" if classifier else "prediction"
    return builder.build(np.zeros(n_outputs), d, strict=False, input_dtype=np.float32, kind="sklearn",
                         output_name=output, n_outputs=n_outputs)


def _add_sklearn_tree(builder: _Builder, t: Any, value: np.ndarray, output: int) -> None:
    left, right = np.asarray(t.children_left), np.asarray(t.children_right)
    missing = getattr(t, "missing_go_to_left", None)
    default_left = np.asarray(missing, dtype=bool) if missing is not None else np.ones(len(left), bool)
    builder.add(left, right, np.asarray(t.feature), np.asarray(t.threshold), value,
                np.asarray(t.weighted_n_node_samples), default_left, output)


def _read_xgboost(model: Any, owner: str) -> TreeEnsemble:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    config = json.loads(booster.save_config())
    learner = config["learner"]
    booster_name = learner["gradient_booster"]["name"]
    if booster_name != "gbtree":
        raise UnsupportedModelError(f"{owner}: XGBoost booster {booster_name!r} is not supported (gbtree only)")
    n_class = int(learner["learner_model_param"].get("num_class", "0") or 0)
    n_outputs = max(1, n_class, int(learner["learner_model_param"].get("num_target", "1") or 1))
    if int(learner["learner_model_param"].get("num_target", "1") or 1) > 1:
        raise UnsupportedModelError(f"{owner}: XGBoost multi-target models are not supported")
    names = booster.feature_names
    d = int(booster.num_features())
    index = {n: i for i, n in enumerate(names)} if names else {}
    dumps = booster.get_dump(dump_format="json", with_stats=True)
    parallel = int(learner["gradient_booster"].get("gbtree_model_param", {}).get("num_parallel_tree", "1") or 1)
    builder = _Builder()
    for t, text in enumerate(dumps):
        nodes: dict[int, dict[str, Any]] = {}
        stack = [json.loads(text)]
        while stack:
            node = stack.pop()
            nodes[node["nodeid"]] = node
            stack.extend(node.get("children", []))
        n = max(nodes) + 1
        left, right = np.full(n, -1), np.full(n, -1)
        feature, threshold = np.full(n, -1), np.zeros(n)
        value, cover, default_left = np.zeros(n), np.zeros(n), np.ones(n, bool)
        for i, node in nodes.items():
            cover[i] = node.get("cover", 0.0)
            if "leaf" in node:
                value[i] = node["leaf"]
                continue
            if "split_condition" not in node:
                raise UnsupportedModelError(f"{owner}: categorical XGBoost splits are not supported")
            split = node["split"]
            feature[i] = index[split] if split in index else int(str(split).lstrip("f"))
            threshold[i] = np.float32(node["split_condition"])  # XGBoost compares in float32
            left[i], right[i] = node["yes"], node["no"]
            default_left[i] = node["missing"] == node["yes"]
        builder.add(left, right, feature, threshold, value, cover, default_left, (t // parallel) % n_outputs)
    ensemble = builder.build(np.zeros(n_outputs), d, strict=True, input_dtype=np.float32, kind="xgboost",
                             output_name="raw margin (output_margin=True)", n_outputs=n_outputs)
    # the base score (a margin offset): read off the booster's own margin at one row
    import xgboost  # the model comes from xgboost, so it is installed

    row = np.zeros((1, d), dtype=np.float32)
    margin = np.asarray(booster.predict(xgboost.DMatrix(row, feature_names=names), output_margin=True),
                        dtype=np.float64).reshape(-1)
    ensemble.offset = margin - ensemble.predict(row)[0]
    return ensemble


def _read_lightgbm(model: Any, owner: str) -> TreeEnsemble:
    booster = model.booster_ if hasattr(model, "booster_") else model
    dump = booster.dump_model()
    n_outputs = int(dump.get("num_tree_per_iteration", 1))
    d = int(dump["max_feature_idx"]) + 1
    builder = _Builder()
    scale = 1.0
    if dump.get("average_output"):
        scale = n_outputs / max(1, len(dump["tree_info"]))
    for t, tree in enumerate(dump["tree_info"]):
        rows = _lightgbm_rows(tree["tree_structure"], owner)
        left = np.array([r.get("left", -1) for r in rows])
        right = np.array([r.get("right", -1) for r in rows])
        feature = np.array([r.get("feature", -1) for r in rows])
        threshold = np.array([float(r.get("threshold", 0.0)) for r in rows])
        value = np.array([r.get("leaf", 0.0) for r in rows]) * scale
        cover = np.array([float(r["cover"]) for r in rows])
        # missing_type None: NaN is treated as 0.0 and compared -> default direction of 0 <= threshold
        default_left = np.array([(0.0 <= r.get("threshold", 0.0)) if r.get("none") else r.get("default_left", True)
                                 for r in rows], dtype=bool)
        zero = np.array([r.get("zero", False) for r in rows], dtype=bool)
        builder.add(left, right, feature, threshold, value, cover, default_left, t % n_outputs,
                    missing_zero=zero)
    return builder.build(np.zeros(n_outputs), d, strict=False, input_dtype=np.float64, kind="lightgbm",
                         output_name="raw score (raw_score=True)", n_outputs=n_outputs)


def _lightgbm_rows(root: dict[str, Any], owner: str) -> list[dict[str, Any]]:
    """One dict per node of a LightGBM tree dump (pre-order ids; children as ids)."""
    rows: list[dict[str, Any]] = []
    stack: list[tuple[dict[str, Any], int, str]] = [(root, -1, "")]
    while stack:
        node, parent, side = stack.pop()
        i = len(rows)
        if parent >= 0:
            rows[parent][side] = i
        if "split_feature" not in node:
            rows.append({"leaf": node.get("leaf_value", 0.0), "cover": node.get("leaf_count", 0)})
            continue
        if node.get("decision_type", "<=") != "<=":
            raise UnsupportedModelError(f"{owner}: categorical LightGBM splits are not supported")
        rows.append({"feature": node["split_feature"], "threshold": node["threshold"],
                     "cover": node.get("internal_count", 0), "default_left": node.get("default_left", True),
                     "zero": node.get("missing_type") == "Zero", "none": node.get("missing_type") == "None"})
        stack.append((node["right_child"], i, "right"))
        stack.append((node["left_child"], i, "left"))
    return rows
