"""The timeline chart of an escrow's money over blocks, drawn with matplotlib (Agg canvas, no
pyplot state) into an SVG fragment that is embedded inline in the HTML report."""

from __future__ import annotations

import io
import re
import threading
from decimal import Decimal

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from backend.audit.model import EscrowAudit, TimelinePoint

#: (field of TimelinePoint, legend label, colour); "withdrawn" is drawn when the model has it
SERIES = (
    ("locked", "Locked", "#2563eb"),
    ("reserved", "Reserved", "#d97706"),
    ("released", "Released to provider", "#059669"),
    ("refunded", "Refunded to client", "#dc2626"),
    ("withdrawn", "Withdrawn", "#7c3aed"),
)

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
#: matplotlib's group ids ("axes_1", "line2d_3") repeat in every chart and nothing refers to them;
#: the referenced ids (markers, clip paths) are hashed with the per-escrow salt and kept
_GROUP_ID = re.compile(r' id="[A-Za-z0-9.]+_\d+"')


def token_units(raw: int, decimals: int) -> float:
    """A raw integer amount as a float in token units (for plotting only)."""
    return float(Decimal(raw).scaleb(-decimals))


def _series(points: list[TimelinePoint], name: str) -> list[int] | None:
    if not points or not hasattr(points[0], name):
        return None
    return [int(getattr(p, name)) for p in points]


def _mathtext_safe(text: str) -> str:
    """Matplotlib reads `$...$` as math; a token symbol from the chain must stay literal."""
    return text.replace("\\", "\\\\").replace("$", r"\$")


class _Template:
    """One figure per set of series, built once and re-used: only the lines' data, the limits and
    the label change between escrows (rebuilding axes and ticks would cost about 3x the time)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        # drawn at about the size it is shown (a 1,000px column), so the text matches the page
        self.figure = Figure(figsize=(10.0, 3.2), dpi=96)
        FigureCanvasAgg(self.figure)
        self.axes = self.figure.subplots()
        styles = {name: (label, colour) for name, label, colour in SERIES}
        self.lines = {
            name: self.axes.step(
                [0], [0], where="post", label=styles[name][0], color=styles[name][1], linewidth=1.8
            )[0]
            for name in names
        }
        ax = self.axes
        ax.set_xlabel("Block", fontsize=9, color="#374151")
        ax.tick_params(labelsize=8, colors="#374151")
        ax.grid(True, color="#e5e7eb", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.ticklabel_format(axis="both", style="plain", useOffset=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        self.figure.subplots_adjust(left=0.08, right=0.82, bottom=0.15, top=0.95)

    def draw(self, escrow: EscrowAudit, salt: str) -> str:
        points = escrow.timeline
        blocks = [p.block for p in points]
        # the last step is drawn a little past the last event so that its change stays visible
        tail = blocks[-1] + max(1, (blocks[-1] - blocks[0]) // 40)
        for name, line in self.lines.items():
            values = _series(points, name) or [0] * len(points)
            units = [token_units(v, escrow.decimals) for v in values]
            line.set_data([*blocks, tail], [*units, units[-1]])
        ax = self.axes
        ax.set_ylabel(_mathtext_safe(f"Amount ({escrow.symbol})"), fontsize=9, color="#374151")
        ax.set_autoscale_on(True)
        ax.relim()
        ax.autoscale_view()
        buffer = io.StringIO()
        # a per-escrow salt keeps element ids (clip paths) distinct between the charts of a page
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
            self.figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        svg = _PROLOGUE.sub("", buffer.getvalue(), count=1)
        return _GROUP_ID.sub("", _METADATA.sub("", svg, count=1)).strip()


_templates: dict[tuple[str, ...], _Template] = {}
_lock = threading.Lock()


def timeline_svg(escrow: EscrowAudit) -> str:
    """An inline `<svg>` element (no XML prologue) plotting the escrow's money per block."""
    names = tuple(
        name
        for name, _, _ in SERIES
        if (values := _series(escrow.timeline, name)) is not None
        and (name != "withdrawn" or any(values))
    )
    salt = f"escrow-{escrow.chain_id}-{escrow.escrow_id}"
    with _lock:
        template = _templates.get(names)
        if template is None:
            template = _templates[names] = _Template(names)
        return template.draw(escrow, salt)
