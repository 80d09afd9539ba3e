"""lumos.report: one self-contained HTML report, and plain-language summaries for three audiences.

- :func:`build` writes ONE HTML file (images inline as data URIs, inline CSS, no script, no network) with the
  prediction, each method's explanation, the evaluation, the sanity checks, the agreement between methods,
  a plain-language summary and the parameters and versions that reproduce every number.
- :func:`summarize` (also :meth:`lumos.Explanation.summary`) writes templated text for an ``"engineer"``,
  a ``"domain_expert"`` or an ``"end_user"``.

Example::

    from lumos import report
    report.build({"IG": e_ig, "Grad-CAM": e_cam}, evaluation=ev, sanity=sc, path="report.html",
                 class_names=names, logits=model(x))
"""

from .build import build
from .summary import AUDIENCES, summarize

__all__ = ["AUDIENCES", "build", "summarize"]
