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


def save_png(fig, path, **kwargs) -> None:
    """``fig.savefig`` as PNG to ``path`` atomically (a temporary file in the same folder, then ``os.replace``), so
    an interrupt never leaves half an image where the user's file was."""
    from .files import atomic_path

    with atomic_path(str(path), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", **kwargs)
