"""One self-contained HTML page about a memory, for a person to read offline (`genmem report`).

Everything a reader needs is inline: the growth and capacity plot, one sample
grid per task (drawn from the version that task wrote, so it shows what the
memory knew then), every class from the latest version, and the replay
quality measured when each class was learned. Images are base64 data URIs, so
the page is one file with no outside reference.
"""

from __future__ import annotations

import base64
from html import escape

from genmem.artifact import replay_quality
from genmem.grids import grid_png
from genmem.memory import Memory
from genmem.plots import growth_plot
from genmem.summary import summarise

SAMPLES_PER_CLASS = 8
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def task_grids(memory: Memory, seed: int) -> list[str]:
    """Per task, its classes drawn from the version it wrote."""
    figures = []
    for version in memory.versions():
        sampler = memory.sampler(version)
        task = memory.manifest(version)["tasks"][-1]
        images, labels = sampler.sample({label: SAMPLES_PER_CLASS for label in task["classes"]}, seed=seed)
        rows = [(sampler.classes.resolve(label).name, images[labels == label]) for label in task["classes"]]
        figures.append(figure(grid_png(rows), f"task {task['task']} ({version}): the classes it learned"))
    return figures


def render_report(memory: Memory, seed: int = 0) -> str:
    """The HTML page about the latest version of `memory` and the tasks that led to it."""
    s = summarise(memory)
    manifest = memory.manifest()
    g = s["generator"]
    names = {c["label"]: c["name"] for c in s["classes"]}
    latest = memory.sampler()
    images, labels = latest.sample({c["label"]: SAMPLES_PER_CLASS for c in s["classes"]}, seed=seed)
    every_class = grid_png([(names[label], images[labels == label]) for label in names])
    quality = [[row["name"], row["task"], "–" if row["recognised"] is None else f"{row['recognised']:.1f}",
                "–" if row["diversity"] is None else f"{row['diversity']:.2f}"] for row in replay_quality(manifest)]
    tasks = [[t["task"], ", ".join(names[c] for c in t["classes"]), "/".join(map(str, t["widths"])),
              f"{t['parameters']['total']:,}", f"{t['seconds']:.0f}"] for t in s["tasks"]]
    title = f"genmem memory {s['memory']}, {s['version']}"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{g['variant'].upper()} generator of {g['channels']}x{g['image_size']}x{g['image_size']} images; "
        f"{len(s['versions'])} versions, {len(s['classes'])} classes; version {s['version']} stores "
        f"{s['storage_bytes']['total'] / 1024:,.1f} KiB. No training image is stored.</p>",
        "<h2>Every class, from the latest version</h2>",
        figure(every_class, f"{SAMPLES_PER_CLASS} samples per class from {s['version']}, seed {seed}"),
        "<h2>Replay quality when each class was learned</h2>",
        "<p><em>recognised</em>: share of 64 generated images that the version's solver puts in their class; "
        "<em>diversity</em>: their mean pairwise distance over that of as many real training images "
        "(1.0: as varied as the real class, near 0: the generator repeats itself).</p>",
        table(["class", "task", "recognised (%)", "diversity"], quality) if quality
        else "<p>Not measured: these versions were written before genmem measured it.</p>",
        "<h2>Growth and capacity</h2>",
        figure(growth_plot({"growth": s["tasks"], "variant": g["variant"]}),
               f"generator parameters per task, and per masked layer the {s['capacity_unit']} each task newly "
               f"reserved, reused and left free"),
        table(["task", "classes", "widths", "parameters", "seconds"], tasks),
        "<h2>Samples per task</h2>",
        *task_grids(memory, seed),
        "</body></html>",
    ]
    return "\n".join(parts)
