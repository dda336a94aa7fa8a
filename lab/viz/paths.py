"""Where pictures may be written (checked when the command line is read, before any work) and
what each of the three is called.

Kept apart from `lab.viz.pictures` so that checking a path does not import matplotlib: a command
given `--plot out.xyz` says so at once (exit 2), not after replaying a capture and then with a
traceback from `savefig`.
"""

from __future__ import annotations

from pathlib import Path

from lab.units import UnitError

# The formats matplotlib's Agg, PDF, PS, SVG and PGF backends write (`savefig` picks the format
# by suffix) in every version we support; a test checks each is in matplotlib's own list.
PICTURE_FORMATS = (
    "eps",
    "jpeg",
    "jpg",
    "pdf",
    "pgf",
    "png",
    "ps",
    "raw",
    "rgba",
    "svg",
    "svgz",
    "tif",
    "tiff",
    "webp",
)


def picture_path(text: str) -> Path:
    """The argparse type of `--plot FILE`: a file name whose suffix matplotlib can write (none
    means .png), and `{kind}` at most as a placeholder in it."""
    if not text.strip():
        raise UnitError("an empty file name")
    path = Path(text)
    suffix = path.suffix.lower().lstrip(".")
    if suffix and suffix not in PICTURE_FORMATS:
        raise UnitError(
            f"cannot draw a .{suffix} picture: {text!r} (use .png, .svg or .pdf; "
            f"also {', '.join(f for f in PICTURE_FORMATS if f not in ('png', 'svg', 'pdf'))})"
        )
    return path


KINDS = ("ladder", "tsg", "states")


def picture_paths(path: str | Path) -> dict[str, Path]:
    """Where `lab.viz.pictures.save_pictures` writes each kind.

    A `{kind}` placeholder in `path` is replaced by "ladder", "tsg" and "states"; otherwise the
    kind is added before the suffix: `out.png` gives `out-ladder.png`, `out-tsg.png` and
    `out-states.png`.
    """
    text = str(path)
    if "{kind}" in text:
        return {k: Path(text.replace("{kind}", k)) for k in KINDS}
    p = Path(text)
    suffix = p.suffix or ".png"
    return {k: p.with_name(f"{p.stem}-{k}{suffix}") for k in KINDS}
