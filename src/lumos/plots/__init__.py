"""lumos.plots: Display objects for every kind of explanation, saveable to PNG/SVG/PDF.

Every display is built ``from_explanation(...)`` (or from plain arrays with its constructor), draws with
``plot(ax=None)`` (which returns the display, with ``figure_`` and ``ax_``) and saves with ``save(path)``.
Nothing calls ``plt.show()`` or touches pyplot: figures are ``matplotlib.figure.Figure`` objects, so plots
work in scripts, servers and notebooks alike (``_repr_png_``). matplotlib is imported only when drawing.

- images: :class:`HeatmapDisplay`, :class:`ComparisonGridDisplay`, :class:`TopRegionDisplay`
- tabular: :class:`BarDisplay`, :class:`WaterfallDisplay`, :class:`ForceDisplay`, :class:`BeeswarmDisplay`,
  :class:`DependenceDisplay`
- text: :class:`TextDisplay` (``to_html()`` and ``plot()``)
- evaluation: :class:`CurveDisplay`, :class:`MetricTableDisplay`, :class:`AgreementMatrixDisplay`,
  :class:`SanityCascadeDisplay`
"""

from .base import Display
from .evaluation import AgreementMatrixDisplay, CurveDisplay, MetricTableDisplay, SanityCascadeDisplay
from .images import ComparisonGridDisplay, HeatmapDisplay, TopRegionDisplay
from .summary import BeeswarmDisplay, DependenceDisplay
from .tabular import BarDisplay, ForceDisplay, WaterfallDisplay
from .text import TextDisplay

__all__ = [
    "AgreementMatrixDisplay",
    "BarDisplay",
    "BeeswarmDisplay",
    "ComparisonGridDisplay",
    "CurveDisplay",
    "DependenceDisplay",
    "Display",
    "ForceDisplay",
    "HeatmapDisplay",
    "MetricTableDisplay",
    "SanityCascadeDisplay",
    "TextDisplay",
    "TopRegionDisplay",
    "WaterfallDisplay",
]
