"""TreeSHAP: exact Shapley values (and interaction values) of tree ensembles from their structure.

Algorithm (written from Lundberg et al. 2020 and the multilinear-extension form of the Shapley value).
For one leaf ``l`` and the distinct features ``j`` on its path, let ``o_j`` be 1 when ``x`` satisfies every
split on ``j`` along the path and ``z_j`` the value of the game when ``j`` is absent: the product of the cover
fractions of those splits (path-dependent, Algorithm 2's ``EXPVALUE``), or 1 when a background row ``b``
satisfies them (interventional, ``v(S) = f(x_S, b_notS)``). The tree's game is then a sum over leaves of
product games ``v_l(S) = value_l prod_{j in S} o_j prod_{j not in S} z_j``, whose Shapley values are

    phi_i = value_l (o_i - z_i) * integral_0^1 prod_{j != i} (z_j + (o_j - z_j) t) dt,

a polynomial of degree < depth integrated exactly by Gauss-Legendre quadrature with ``ceil(D / 2)`` nodes
(``D``: most distinct features on a path). The products are shared along the trees: ``G_c(t)``, the product
over the path to node ``c`` (repeated features merged), is built top-down level by level; ``S_c(t)``, the
sum of ``value_l G_l(t)`` over the leaves below ``c``, bottom-up; each edge then contributes
``(o_c - z_c) sum_q w_q (S_c - S of the next splits on the same feature below)(t_q) / h_c(t_q)`` to its
feature. Everything is vectorised in torch over (nodes of all trees x samples x quadrature nodes), chunked
over samples to bound memory; the only Python loops run over tree levels and chunks.

Shapley interaction values (Lundberg et al. 2020, eq. for ``Phi_ij``): ``Phi_ij = (phi_i(v | j present) -
phi_i(v | j absent)) / 2`` for ``i != j`` (half the Shapley interaction index of Grabisch & Roubens 1999,
split symmetrically), ``Phi_ii = phi_i - sum_{j != i} Phi_ij``, so each row sums to the Shapley values:
the convention of ``shap.TreeExplainer.shap_interaction_values``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ...core.progress import progress_bar
from ...core.registry import register
from ...core.targets import Class
from ...errors import ModelCallError, TargetError, ValidationError
from ..base import Attribution, ExplainContext
from ..perturbation.masking import prepare_reference
from .base import ShapleyExplainer
from .tree_models import TreeEnsemble, check_supported, read_ensemble

#: elements of one (nodes x samples x quadrature) working array (float64: 8 bytes each); three are alive
_CHUNK_ELEMENTS = 1 << 23
_MODES = ("auto", "tree_path_dependent", "interventional")


@dataclass
class TreeLevels:
    """The structure of a (sub-)ensemble, nodes in level order over all trees.

    Level 0 holds the roots; level ``k + 1`` holds ``[left(p), right(p)]`` for each internal node ``p`` of
    level ``k`` in position order (``inner[k]``), so that parents and children are matched by slices.
    """

    parent: np.ndarray  # (n,) parent position, -1 at roots
    split: np.ndarray  # (n,) feature of the parent's split (the edge into the node), -1 at roots
    is_left: np.ndarray  # (n,) bool
    prev: np.ndarray  # (n,) nearest ancestor edge on the same feature, -1 if none
    zfrac: np.ndarray  # (n,) merged cover fraction (product over the same-feature edges on the path)
    value: np.ndarray  # (n,) leaf value (0 at internal nodes)
    order: np.ndarray  # position -> ensemble node id
    bounds: list[int]  # level k holds positions bounds[k] .. bounds[k+1]
    inner: list[np.ndarray]  # positions of the internal nodes of each level
    n_quad: int
    expected: float  # sum of leaf values weighted by the cover fractions (path-dependent v(empty))

    @staticmethod
    def build(trees: TreeEnsemble) -> TreeLevels:
        levels = [trees.roots.astype(np.int64)]
        inner: list[np.ndarray] = []
        start = 0
        while True:
            current = levels[-1]
            internal = np.flatnonzero(trees.left[current] >= 0)
            inner.append(internal + start)
            start += len(current)
            if not len(internal):
                break
            nxt = np.empty(2 * len(internal), dtype=np.int64)
            nxt[0::2], nxt[1::2] = trees.left[current[internal]], trees.right[current[internal]]
            levels.append(nxt)
        order = np.concatenate(levels)
        n = len(order)
        bounds = np.cumsum([0, *map(len, levels)]).tolist()
        parent = np.full(n, -1, dtype=np.int64)
        is_left = np.zeros(n, dtype=bool)
        for k in range(len(levels) - 1):
            parent[bounds[k + 1]:bounds[k + 2]] = np.repeat(inner[k], 2)
            is_left[bounds[k + 1]:bounds[k + 2]:2] = True
        has_parent = parent >= 0
        pe = order[np.maximum(parent, 0)]
        split = np.where(has_parent, trees.feature[pe], -1)
        cover = trees.cover[order]
        pc = np.where(has_parent, cover[np.maximum(parent, 0)], 1.0)
        frac = np.where(pc > 0, cover / np.where(pc > 0, pc, 1.0), 0.0)
        # nearest ancestor edge on the same feature: walk up the parents (vectorised over nodes)
        prev = np.full(n, -1, dtype=np.int64)
        cursor = parent.copy()
        open_ = has_parent.copy()
        while open_.any():
            c = np.maximum(cursor, 0)
            found = open_ & (split[c] == split) & (parent[c] >= 0)
            prev[found] = cursor[found]
            open_ &= ~found & (parent[c] >= 0)
            cursor = np.where(open_, parent[c], -1)
        zfrac, path = frac.copy(), np.ones(n)
        distinct = np.zeros(n, dtype=np.int64)
        for k in range(1, len(bounds) - 1):
            s = slice(bounds[k], bounds[k + 1])
            pr, par = prev[s], parent[s]
            zfrac[s] = frac[s] * np.where(pr >= 0, zfrac[np.maximum(pr, 0)], 1.0)
            path[s] = path[par] * frac[s]
            distinct[s] = distinct[par] + (pr < 0)
        value = np.where(trees.left[order] < 0, trees.value[order, 0], 0.0)
        return TreeLevels(parent, split, is_left, prev, zfrac, value, order, bounds, inner,
                          max(1, -(-int(distinct.max()) // 2)), float((value * path).sum()))

    @property
    def n_nodes(self) -> int:
        return len(self.parent)

    def torch(self, key: str) -> torch.Tensor:
        """Index tensors used by the computation, built once: ``prev_or_root``, ``no_prev``, ``value``,
        ``edges``, ``edge_feature``, ``parents{k}`` (level-local parent of each node of level k + 1),
        ``inner{k}``."""
        cache = self.__dict__.setdefault("_torch", {})
        if key not in cache:
            if key == "prev_or_root":
                array = np.maximum(self.prev, 0)
            elif key == "no_prev":
                array = np.flatnonzero(self.prev < 0)
            elif key == "value":
                array = self.value
            elif key == "edges":
                array = np.flatnonzero(self.parent >= 0)
            elif key == "edge_feature":
                array = self.split[self.parent >= 0]
            elif key.startswith("parents"):
                k = int(key[7:])
                array = self.parent[self.bounds[k + 1]:self.bounds[k + 2]] - self.bounds[k]
            else:
                array = self.inner[int(key[5:])]
            cache[key] = torch.from_numpy(np.ascontiguousarray(array))
        return cache[key]


def _routes(trees: TreeEnsemble, levels: TreeLevels, x: np.ndarray) -> torch.Tensor:
    """Merged indicators ``o_c`` (n_nodes, n) float64: ``x`` satisfies every split on the edge's feature
    along the path to node ``c`` (1 at roots)."""
    inner = np.concatenate(levels.inner)
    left = np.ones((levels.n_nodes, x.shape[0]), dtype=bool)
    if len(inner):
        left[inner] = trees.go_left(x, levels.order[inner]).T
    parent = np.maximum(levels.parent, 0)
    go = np.where(levels.is_left[:, None], left[parent], ~left[parent])
    go[levels.parent < 0] = True
    bounds, prev = levels.bounds, levels.prev
    for k in range(1, len(bounds) - 1):
        pr = prev[bounds[k]:bounds[k + 1]]
        with_prev = pr >= 0
        if with_prev.any():
            rows = np.flatnonzero(with_prev) + bounds[k]
            go[rows] &= go[pr[with_prev]]
    return torch.from_numpy(go.astype(np.float64))


def _tree_shap(levels: TreeLevels, o: torch.Tensor, z: torch.Tensor, n_features: int) -> torch.Tensor:
    """Shapley values (n_features, n) of the product games given merged ``o`` and ``z`` (n_nodes, n).

    Working arrays are (nodes, quadrature nodes, samples). With ``h_c(t) = z_c + (o_c - z_c) t``, ``G`` the
    product of the factors on the path and ``S_c = sum_{leaves below c} value_l G_l``, the leaf formula of the
    module doc summed over leaves telescopes along the same-feature edges of a path into
    ``phi_i = sum_{edges c on feature i} integral S_c(t) [(o_c - z_c) / h_c(t) - (o_p - z_p) / h_p(t)] dt``
    (``p``: the previous edge on feature ``i`` above ``c``; its term is 0 when there is none). The bracket is
    bounded (by ``1 / t``), so no cancellation; ``0 / 0`` (a branch with zero cover, or unreachable in
    the interventional game) is 0, which is exact there.
    """
    t_np, w_np = np.polynomial.legendre.leggauss(levels.n_quad)
    t = torch.as_tensor((t_np + 1) / 2)[None, :, None]
    w = torch.as_tensor(w_np / 2)
    n_nodes, n = o.shape
    dz = (o - z)[:, None, :]
    h = torch.addcmul(z[:, None, :], dz, t)  # (nodes, q, n): h_c(t_q)
    prev = levels.torch("prev_or_root")
    hp = h.index_select(0, prev)
    dzp = dz.index_select(0, prev)
    roots_or_first = levels.torch("no_prev")
    hp.index_fill_(0, roots_or_first, 1.0)
    dzp.index_fill_(0, roots_or_first, 0.0)
    hp.clamp_(min=1e-300)
    h.clamp_(min=1e-300)
    g = torch.div(h, hp)  # the factor a node adds to G (merged features: new factor over the old one)
    bounds = levels.bounds
    g[: bounds[1]] = 1.0
    for k in range(len(bounds) - 2):  # top-down: G_c = G_parent * ratio_c
        parents = levels.torch(f"parents{k}")
        g[bounds[k + 1]:bounds[k + 2]].mul_(g[bounds[k]:bounds[k + 1]].index_select(0, parents))
    g.mul_(levels.torch("value")[:, None, None])  # S at leaves: value_l G_l (0 inside, filled below)
    for k in range(len(bounds) - 3, -1, -1):  # bottom-up: S_p = S_left + S_right
        m = len(levels.inner[k])
        pairs = g[bounds[k + 1]:bounds[k + 2]].view(m, 2, *g.shape[1:])
        g.index_copy_(0, levels.torch(f"inner{k}"), pairs[:, 0] + pairs[:, 1])
    torch.div(dz, h, out=h)
    torch.div(dzp, hp, out=hp)
    h -= hp
    del hp
    contrib = torch.zeros(n_nodes, n, dtype=torch.float64)
    for i in range(len(w)):  # integral_0^1 S(t) F(t) dt by the quadrature rule
        contrib.addcmul_(g[:, i], h[:, i], value=float(w[i]))
    edges = levels.torch("edges")
    phi = torch.zeros(n_features, n, dtype=torch.float64)
    phi.index_add_(0, levels.torch("edge_feature"), contrib.index_select(0, edges))
    return phi


def _conditioned(levels: TreeLevels, o: torch.Tensor, z: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o, z)`` of the games with feature ``j`` fixed present and fixed absent (both as constants)."""
    on = torch.from_numpy(levels.split == j)[:, None]
    zp = torch.where(on, o, z)  # present: the factor is o_j
    om = torch.where(on, z, o)  # absent: the factor is z_j
    return zp, om


def _shap_and_interactions(levels: TreeLevels, o: torch.Tensor, z: torch.Tensor, d: int,
                           interactions: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shapley values (n, d) and optionally interaction values (n, d, d) for one chunk of samples/pairs."""
    phi = _tree_shap(levels, o, z, d).T
    if not interactions:
        return phi, None
    inter = torch.zeros(o.shape[1], d, d, dtype=torch.float64)
    used = np.unique(levels.split[levels.split >= 0])
    for j in used:
        zp, om = _conditioned(levels, o, z, int(j))
        present = _tree_shap(levels, o, zp, d).T
        absent = _tree_shap(levels, om, z, d).T
        inter[:, :, j] = (present - absent) / 2
    idx = torch.arange(d)
    inter[:, idx, idx] = 0.0
    inter[:, idx, idx] = phi - inter.sum(2)
    return phi, inter


@register
class TreeSHAP(ShapleyExplainer):
    """Exact TreeSHAP values of tree ensembles: path-dependent (from the covers) or interventional.

    ``feature_perturbation="tree_path_dependent"``: ``v(S)`` is the tree's expected output when the features
    outside ``S`` follow the training data down the tree (cover fractions); base value = the covers' expected
    value. ``"interventional"``: ``v(S) = E_b f(x_S, b_notS)`` over the background rows passed as
    ``baseline=``; base value = mean prediction on the background. ``"auto"`` (default): interventional when a
    ``baseline`` is given, else path-dependent. Efficiency ``sum_i phi_i = f(x) - base_value`` holds up to
    floating point. See the module doc for the algorithm; Lundberg et al. (2020), "From local explanations to
    global understanding with explainable AI for trees", Nature Machine Intelligence.

    Explained output (``extras["output"]``): class probabilities for scikit-learn trees and forests, the raw
    margin (log-odds) for GradientBoosting/XGBoost/LightGBM classifiers, the prediction for regressors.
    ``target``: a class (output) index, one per sample, or ``None`` (predicted class; the output for one-output
    models; binary boosters have one output, the margin of class 1). For XGBoost and LightGBM boosters the
    path-dependent values come from the boosters' own exact implementations (``pred_contribs`` /
    ``pred_contrib``; XGBoost ``pred_interactions``), checked for efficiency against the raw margin; pass
    ``use_native=False`` to use lumos' implementation on the parsed trees.

    Extras: ``base_value`` (per sample, ``(n,)``), ``estimand``, ``output``, ``convergence_delta``,
    ``interactions`` ``(n, d, d)`` when ``interactions=True`` (see the module doc for the convention), and
    ``n_evaluations``: the rows routed through the ensemble (``n``, plus the background rows when
    interventional); no model calls are made besides one consistency check of the model's own output.

    Args:
        feature_perturbation: ``"auto"``, ``"tree_path_dependent"`` or ``"interventional"``.
        interactions: also compute Shapley interaction values (cost ~``2 d`` times the values').
        use_native: use XGBoost's / LightGBM's own exact path-dependent implementation where available.

    Example::

        e = TreeSHAP(forest).explain(x_test)                     # path-dependent
        e = TreeSHAP(forest).explain(x_test, baseline=x_train[:100])  # interventional
    """

    name: ClassVar[str] = "tree_shap"
    models: ClassVar[str] = "trees"
    needs_baseline: ClassVar[bool] = False
    data_arguments: ClassVar[tuple[str, ...]] = ("background_weights",)
    reference: ClassVar[str] = "Lundberg et al. 2020, Nature Machine Intelligence 2:56-67 (TreeSHAP)"

    def __init__(self, model: Any, *, feature_perturbation: str = "auto", interactions: bool = False,
                 use_native: bool = True, **kwargs: Any) -> None:
        owner = type(self).__name__
        check_supported(model, owner=owner)
        if feature_perturbation not in _MODES:
            raise ValidationError(f"{owner}: feature_perturbation must be one of {', '.join(_MODES)}, "
                                  f"got {feature_perturbation!r}")
        for name, flag in (("interactions", interactions), ("use_native", use_native)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{owner}: {name} must be True or False, got {flag!r}")
        super().__init__(model, **kwargs)
        self.feature_perturbation = feature_perturbation
        self.interactions = interactions
        self.use_native = use_native

    def get_params(self) -> dict[str, Any]:
        return {"feature_perturbation": self.feature_perturbation, "interactions": self.interactions,
                "use_native": self.use_native}

    # ------------------------------------------------------------------ explain
    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        ensemble = read_ensemble(self.model, owner=owner)
        x_t = batch.tensors[0]
        if len(batch.tensors) != 1 or x_t.ndim != 2 or x_t.shape[1] != ensemble.n_features:
            raise ValidationError(f"{owner}: inputs must be one (n_samples, {ensemble.n_features}) table (the model "
                                  f"has {ensemble.n_features} features), got {batch.describe()}")
        x = x_t.detach().cpu().to(torch.float64).numpy()
        out = ensemble.predict(x)
        _check_model_output(self.model, ensemble, x, out, owner)
        target = context.target.resolve(torch.from_numpy(out), owner=owner, n_samples=batch.n)
        if not isinstance(target, Class):
            raise TargetError(f"{owner}: target must be None, a class/output index or one per sample "
                              f"(lumos.targets.Class/Output), got {target.describe()}")
        classes = np.broadcast_to(target.indices(), (batch.n,)).astype(np.int64)
        mode = self.feature_perturbation
        if mode == "auto":
            mode = "tree_path_dependent" if context.baseline is None else "interventional"
        background, weights = None, None
        if mode == "interventional":
            if context.baseline is None:
                raise ValidationError(f"{owner}: feature_perturbation='interventional' needs background rows: "
                                      f"pass baseline=<array of shape (n_background, {ensemble.n_features})>")
            ref = prepare_reference(context.baseline, batch, owner=owner,
                                    weights=context.data_args.get("background_weights"))
            background = ref.rows[0].detach().cpu().to(torch.float64).numpy()
            weights = None if ref.weights is None else ref.weights.numpy()
        d = ensemble.n_features
        phi = np.zeros((batch.n, d))
        base = np.zeros(batch.n)
        inter = np.zeros((batch.n, d, d)) if self.interactions else None
        native = self.use_native and mode == "tree_path_dependent" and ensemble.kind in ("xgboost", "lightgbm")
        for k in np.unique(classes):
            rows = np.flatnonzero(classes == k)
            if native:
                p, b, i = _native(self.model, ensemble, x[rows], int(k), self.interactions, owner)
            else:
                trees = np.flatnonzero((ensemble.tree_output == k) | (ensemble.tree_output < 0))
                sub = ensemble.select(trees, int(k))
                p, b, i = self._compute(sub, x[rows], background, weights)
            phi[rows], base[rows] = p, b
            if inter is not None:
                inter[rows] = i if i is not None else self._compute(
                    ensemble.select(np.flatnonzero((ensemble.tree_output == k) | (ensemble.tree_output < 0)),
                                    int(k)), x[rows], background, weights)[2]
        scores = torch.from_numpy(out[np.arange(batch.n), classes])
        extras: dict[str, Any] = {
            "base_value": torch.from_numpy(base),
            "estimand": "path-dependent (tree_path_dependent)" if mode == "tree_path_dependent"
            else f"interventional over {len(background)} background rows",
            "output": ensemble.output_name,
            "convergence_delta": torch.from_numpy(phi.sum(1) - (scores.numpy() - base)),
            "n_evaluations": int(batch.n + (0 if background is None else len(background))),
        }
        if inter is not None:
            extras["interactions"] = torch.from_numpy(inter)
        attributions = torch.from_numpy(phi).to(device=x_t.device, dtype=x_t.dtype if x_t.is_floating_point()
                                                 else torch.float64)
        return Attribution((attributions,), scores.to(x_t.device), extras, Class(classes))

    def _compute(self, trees: TreeEnsemble, x: np.ndarray, background: np.ndarray | None,
                 weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Values (n, d), base values (n,) and interactions (n, d, d) or None, for a one-output ensemble."""
        levels = TreeLevels.build(trees)
        d, n = trees.n_features, x.shape[0]
        o_all = _routes(trees, levels, x)
        if background is None:
            z_col = torch.from_numpy(levels.zfrac)[:, None]
            per_chunk = max(1, _CHUNK_ELEMENTS // (levels.n_nodes * levels.n_quad))
            pairs = [(s, min(n, s + per_chunk)) for s in range(0, n, per_chunk)]
            phi = np.zeros((n, d))
            inter = np.zeros((n, d, d)) if self.interactions else None
            bar = progress_bar(len(pairs), desc="tree shap", progress=self.progress)
            for s, e in pairs:
                p, i = _shap_and_interactions(levels, o_all[:, s:e], z_col.expand(-1, e - s), d, self.interactions)
                phi[s:e] = p.numpy()
                if inter is not None:
                    inter[s:e] = i.numpy()
                bar.update(1)
            bar.close()
            return phi, np.full(n, levels.expected + trees.offset[0]), inter
        z_all = _routes(trees, levels, background)
        b = background.shape[0]
        w = torch.full((b,), 1.0 / b, dtype=torch.float64) if weights is None else torch.as_tensor(weights)
        per_chunk = max(1, _CHUNK_ELEMENTS // (levels.n_nodes * levels.n_quad * b))
        phi = np.zeros((n, d))
        inter = np.zeros((n, d, d)) if self.interactions else None
        chunks = list(range(0, n, per_chunk))
        bar = progress_bar(len(chunks), desc="tree shap (interventional)", progress=self.progress)
        for s in chunks:
            e = min(n, s + per_chunk)
            o = o_all[:, s:e].repeat_interleave(b, dim=1)
            z = z_all.repeat(1, e - s)
            p, i = _shap_and_interactions(levels, o, z, d, self.interactions)
            phi[s:e] = torch.einsum("nbd,b->nd", p.reshape(e - s, b, d), w).numpy()
            if inter is not None:
                inter[s:e] = torch.einsum("nbij,b->nij", i.reshape(e - s, b, d, d), w).numpy()
            bar.update(1)
        bar.close()
        base = float(trees.predict(background)[:, 0] @ w.numpy())
        return phi, np.full(n, base), inter


# ------------------------------------------------------------------ the models' own outputs
def _raw_output(model: Any, ensemble: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """The model's own value of the explained output (see ``tree_models``): (n, n_outputs)."""
    if ensemble.kind == "xgboost":
        import xgboost

        booster = model.get_booster() if hasattr(model, "get_booster") else model
        out = booster.predict(xgboost.DMatrix(x.astype(np.float32), feature_names=booster.feature_names),
                              output_margin=True)
    elif ensemble.kind == "lightgbm":
        booster = model.booster_ if hasattr(model, "booster_") else model
        out = booster.predict(x, raw_score=True)
    elif hasattr(model, "decision_function") and "margin" in ensemble.output_name:
        out = model.decision_function(x)
    elif hasattr(model, "predict_proba"):
        out = model.predict_proba(x)
    else:
        out = model.predict(x)
    return np.asarray(out, dtype=np.float64).reshape(x.shape[0], -1)


def _check_model_output(model: Any, ensemble: TreeEnsemble, x: np.ndarray, out: np.ndarray, owner: str) -> None:
    """Raise when the parsed trees do not reproduce the model's own output (float32 boosters: to 1e-5)."""
    try:
        own = _raw_output(model, ensemble, x)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelCallError(f"{owner}: calling the model to check its output failed: {type(exc).__name__}: {exc}") \
            from exc
    tol = 1e-9 if ensemble.kind != "xgboost" else 1e-5
    scale = 1.0 + np.abs(own).max(initial=0.0)
    if own.shape != out.shape or np.abs(own - out).max(initial=0.0) > tol * scale * max(1, ensemble.n_trees) ** 0.5:
        raise RuntimeError(f"{owner}: the trees read from {type(model).__name__} do not reproduce its output "
                           f"(largest difference {np.abs(own - out).max() if own.shape == out.shape else 'shape'})")


def _native(model: Any, ensemble: TreeEnsemble, x: np.ndarray, k: int, interactions: bool,
            owner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Path-dependent values from XGBoost's / LightGBM's own TreeSHAP, checked for efficiency."""
    d, n, m = ensemble.n_features, x.shape[0], ensemble.n_outputs
    inter = None
    if ensemble.kind == "xgboost":
        import xgboost

        booster = model.get_booster() if hasattr(model, "get_booster") else model
        data = xgboost.DMatrix(x.astype(np.float32), feature_names=booster.feature_names)
        contrib = np.asarray(booster.predict(data, pred_contribs=True), dtype=np.float64).reshape(n, m, d + 1)
        margin = np.asarray(booster.predict(data, output_margin=True), dtype=np.float64).reshape(n, m)
        if interactions:
            full = np.asarray(booster.predict(data, pred_interactions=True), dtype=np.float64)
            inter = full.reshape(n, m, d + 1, d + 1)[:, k, :d, :d]
    else:
        booster = model.booster_ if hasattr(model, "booster_") else model
        contrib = np.asarray(booster.predict(x, pred_contrib=True), dtype=np.float64).reshape(n, m, d + 1)
        margin = np.asarray(booster.predict(x, raw_score=True), dtype=np.float64).reshape(n, m)
    phi, base = contrib[:, k, :d], contrib[:, k, d]
    gap = np.abs(phi.sum(1) + base - margin[:, k]).max(initial=0.0)
    if gap > 1e-4 * (1.0 + np.abs(margin).max(initial=0.0)):
        raise RuntimeError(f"{owner}: the {ensemble.kind} booster's own SHAP values fail efficiency by {gap:.3g}")
    return phi, base, inter
