"""
Draw the scale curves of a results file as PNG charts (one per curve).

``python -m benchmarks.charts [RESULTS.json] [OUT_DIR]`` (defaults:
``benchmarks/results.json``, ``benchmarks/charts/``); ``benchmarks/run.py``
calls :func:`draw` after a full run. matplotlib is optional (the ``bench``
extra installs it): without it no chart is drawn and :func:`draw` says why,
it never raises for that.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_PATH = os.path.join(HERE, "results.json")
CHARTS_DIR = os.path.join(HERE, "charts")

#: Seconds are drawn in this unit on the y axis.
_SCALE = (1e-6, "us")


def curves_of(data):
    """Return ``{key: (curve, runs)}`` of every scenario in the results *data* that has curves.

    *runs* is how many whole runs the curve is the median of (``--median-of``), or None.
    """
    found = {}
    for scenario in data.get("scenarios", {}).values():
        for key, curve in (scenario.get("curves") or {}).items():
            found[key] = (curve, scenario.get("runs"))
    return found


def draw(results_path=RESULTS_PATH, out_dir=CHARTS_DIR):
    """Draw each curve of *results_path* into ``out_dir/<key>.png``.

    :return tuple: ``(paths written, note)``; *note* is None, or why nothing
        was drawn (matplotlib missing, no curves in the file).
    """
    with open(results_path, encoding="utf-8") as f:
        data = json.load(f)
    curves = curves_of(data)
    if not curves:
        return [], "no curves in %s (run the scale scenario)" % results_path
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return [], "charts skipped: matplotlib not importable (%s; pip install 'greenworks[bench]')" % exc
    os.makedirs(out_dir, exist_ok=True)
    machine = data.get("machine", {})
    subtitle = "%s, %s cores, Python %s, gevent %s; %s" % (
        machine.get("cpu", "?"),
        machine.get("cores", "?"),
        machine.get("python", "?"),
        machine.get("gevent", "?"),
        machine.get("date", "?"),
    )
    paths = []
    factor, unit = _SCALE
    for key, (curve, runs) in curves.items():
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
        for name, values in curve["series"].items():
            points = [(x, v / factor) for x, v in zip(curve["x"], values, strict=False) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(curve["x_label"])
        ax.set_ylabel("per %s (%s)" % ("wake-up" if key == "wakeup" else "task", unit))
        ax.set_title(curve["title"], fontsize=11)
        note = subtitle + ("; median of %d runs" % runs if runs and runs > 1 else "")
        fig.text(0.5, 0.005, note, ha="center", fontsize=7, color="gray")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = os.path.join(out_dir, "%s.png" % key)
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths, None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    results = argv[0] if argv else RESULTS_PATH
    out_dir = argv[1] if len(argv) > 1 else CHARTS_DIR
    paths, note = draw(results, out_dir)
    for path in paths:
        print("chart: %s" % os.path.relpath(path))
    if note:
        print("note: %s" % note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
