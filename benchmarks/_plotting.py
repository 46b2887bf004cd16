"""The legend-and-save tail shared by the benchmarks' time-versus-error plots."""

from __future__ import annotations


def finish_scatter_figure(fig, path, title: str, markers: dict[str, str], colors: dict[str, str], ncol: int,
                          top: float = 0.97) -> None:
    """One legend for the whole figure (marker: what ``markers`` keys name, colour: method), title, save, close."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=m, ls="", color="gray", label=label) for label, m in markers.items()]
    handles += [Line2D([], [], marker="o", ls="", color=c, label=m) for m, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, top))
    fig.savefig(path, dpi=120)
    plt.close(fig)
