"""matplotlib figures without pyplot: the Agg canvas is attached to each figure, so library code never switches
matplotlib's global backend (``matplotlib.use``) and keeps no figure alive in pyplot's registry (nothing to
close). Used by ``lightmedseg explain`` and the plots of ``lightmedseg benchmark``."""
from __future__ import annotations


def new_figure(**kwargs):
    """``matplotlib.figure.Figure(**kwargs)`` drawn by the Agg canvas (``fig.savefig`` writes PNGs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
