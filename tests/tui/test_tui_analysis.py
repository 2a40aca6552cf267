"""Understand one run: per-class accuracy, the most confused pairs and their test images."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench.rundir import layout
from fgbench.tui.screens.analysis import AnalysisScreen, bar
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_fixture_run
from tui_helpers import tui_app, wait_for

RUN = "20250305-130000-birds"
CLASSES = ["albatross", "bunting", "cardinal"]
# (true, predicted) of each test image: 4 per class
PAIRS = ([(0, 0)] * 3 + [(0, 1)]
         + [(1, 1)] + [(1, 2)] * 3
         + [(2, 2)] * 2 + [(2, 1)] * 2)


def make_analysis_run(root: Path, *, predictions: bool = True, with_files: bool = True) -> Path:
    """A finished run with confusion.json and predictions.json over real (tiny) image files."""
    from PIL import Image

    run_dir = make_fixture_run(root, RUN, name="birds", dataset="cub200", arch="resnet18", epochs=2)
    images = root.parent / "images"
    files = []
    for k, (y, _p) in enumerate(PAIRS):
        f = images / CLASSES[y] / f"{CLASSES[y]}_{k:02d}.png"
        if with_files:
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), ((40 * k) % 256, 80 * y, 200)).save(f)
        files.append(str(f))
    n = len(CLASSES)
    matrix = [[0] * n for _ in range(n)]
    for y, p in PAIRS:
        matrix[y][p] += 1
    layout.write_json(run_dir / layout.CONFUSION_FILE, {"split": "test", "model": "ema", "class_names": CLASSES,
                                                          "matrix": matrix, "epoch": 2})
    if predictions:
        layout.write_json(run_dir / layout.PREDICTIONS_FILE, {
            "split": "test", "model": "ema", "epoch": 2, "test_size": 16, "class_names": CLASSES,
            "index": list(range(len(PAIRS))), "file": files, "label": [y for y, _ in PAIRS],
            "predicted": [p for _, p in PAIRS]})
    return run_dir


def _app(dirs):
    return tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)


async def open_analysis(pilot, run_dir: Path) -> AnalysisScreen:
    app = pilot.app
    await wait_for(pilot, lambda: app.pane("runs") is not None and app.pane("runs").table.row_count >= 1,
                   what="runs listed")
    app.post_message(__import__("fgbench.tui.messages", fromlist=["OpenRun"]).OpenRun(run_dir))
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
    view = app.screen.query_one(RunView)
    await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "completed", what="drawn")
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, AnalysisScreen), what="analysis screen")
    await pilot.pause()
    return app.screen


@pytest.fixture
def ana_dirs(dirs, monkeypatch):
    monkeypatch.setenv("FGBENCH_IMAGES", "halfcell")
    return dirs


def test_bars_tell_95_from_99_percent():
    assert bar(95.0) != bar(99.0) and bar(99.0) != bar(100.0)
    assert bar(100.0) == "█" * 10 and bar(0.0) == "" and bar(None) == ""
    assert len(bar(50.0)) == 5


async def test_per_class_accuracy_and_confused_pairs_with_their_images(ana_dirs):
    run_dir = make_analysis_run(ana_dirs.runs)
    app = _app(ana_dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        header = str(screen.query_one("#analysis-header").render())
        assert "ema model" in header and "epoch 2" in header and "6/12 right" in header and "50.00%" in header
        table = screen.query_one("#class-table")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        # worst first: bunting 1/4, cardinal 2/4, albatross 3/4
        assert [(r[0], r[1], r[2]) for r in rows] == [("bunting", "25.00", "1/4"), ("cardinal", "50.00", "2/4"),
                                                     ("albatross", "75.00", "3/4")]
        await pilot.press("o")  # best first
        await pilot.pause()
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["albatross", "cardinal", "bunting"]
        pairs = screen.query_one("#pair-list")
        prompts = [str(pairs.get_option_at_index(i).prompt) for i in range(pairs.option_count)]
        assert [p.strip().rsplit("  ", 1)[0].split(None, 1) for p in prompts] == [
            ["3", "bunting → cardinal"], ["2", "cardinal → bunting"], ["1", "albatross → bunting"]]
        # the first pair's images: the three buntings taken for cardinals, as pictures
        assert [Path(item["file"]).name for item in screen.shown] == ["bunting_05.png", "bunting_06.png",
                                                                       "bunting_07.png"]
        pictures = screen.query(".picture")
        assert len(pictures) == 3 and all(type(p).__name__ == "HalfcellImage" for p in pictures)
        assert "3 test images of bunting predicted as cardinal" in str(screen.query_one("#images-title").render())
        # another pair
        await pilot.press("down")
        await pilot.pause()
        assert [Path(item["file"]).name for item in screen.shown] == ["cardinal_10.png", "cardinal_11.png"]
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen)


async def test_images_page_when_the_screen_is_narrow(ana_dirs):
    run_dir = make_analysis_run(ana_dirs.runs)
    app = _app(ana_dirs)
    async with app.run_test(size=(40, 30)) as pilot:  # two pictures across
        screen = await open_analysis(pilot, run_dir)
        assert len(screen.shown) == 2
        assert "page 1/2" in str(screen.query_one("#images-title").render())
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert [Path(i["file"]).name for i in screen.shown] == ["bunting_07.png"]
        await pilot.press("right_square_bracket")  # past the end: stays on the last page
        await pilot.pause()
        assert [Path(i["file"]).name for i in screen.shown] == ["bunting_07.png"]


async def test_without_predictions_or_files_it_says_why(ana_dirs):
    run_dir = make_analysis_run(ana_dirs.runs, predictions=False)
    app = _app(ana_dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        assert screen.query_one("#class-table").row_count == 3  # the numbers are still there
        assert "no predictions.json" in str(screen.query_one("#images-note").render())
        assert not screen.query(".picture")


async def test_image_files_that_moved_are_named_not_drawn(ana_dirs):
    run_dir = make_analysis_run(ana_dirs.runs, with_files=False)
    app = _app(ana_dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        assert len(screen.shown) == 3
        assert not any(type(p).__name__ == "HalfcellImage" for p in screen.query(".picture"))
        assert "3 image files are no longer where the run read them" in str(screen.query_one("#images-note").render())


async def test_the_run_view_names_the_worst_classes_and_pairs(ana_dirs):
    run_dir = make_analysis_run(ana_dirs.runs)
    app = _app(ana_dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.pane("runs") is not None and app.pane("runs").table.row_count >= 1,
                       what="runs listed")
        from fgbench.tui.messages import OpenRun

        app.post_message(OpenRun(run_dir))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        log = app.screen.query_one("#run-log")
        await wait_for(pilot, lambda: "worst classes" in str(log.render()), what="class rows")
        text = str(log.render())
        assert "bunting 25.0%, cardinal 50.0%, albatross 75.0%  (a: all 3)" in text
        assert "bunting → cardinal (3), cardinal → bunting (2)" in text


def test_the_terminal_is_asked_about_pictures_only_where_it_may_draw_them():
    from fgbench.tui.images import terminal_may_draw

    assert terminal_may_draw({"TERM": "xterm-kitty"}) and terminal_may_draw({"TERM_PROGRAM": "WezTerm"})
    assert terminal_may_draw({"KONSOLE_VERSION": "230804", "TERM": "xterm-256color"})
    assert not terminal_may_draw({"TERM": "xterm-256color"})  # plain xterm over SSH: half blocks, no wait
    assert not terminal_may_draw({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1000/default,1,0"})
    assert not terminal_may_draw({"TERM": "screen", "STY": "123.pts-0"})


async def test_a_large_confusion_is_read_from_its_cells_file(ana_dirs):
    """Past 1,000 classes confusion.json names confusion.npy (the non-zero cells): the analysis reads it."""
    import numpy as np

    from fgbench.rundir.confusion import DENSE_MAX_CLASSES, write_confusion

    run_dir = make_analysis_run(ana_dirs.runs, predictions=False)
    n = DENSE_MAX_CLASSES + 200
    names = [f"c{i:04d}" for i in range(n)]
    # class 7: 3 right, 1 taken for class 1100; class 1100: 2 right; every other class has no image
    write_confusion(run_dir, model="raw", class_names=names, epoch=2,
                    cells=np.array([[7, 7, 3], [7, 1100, 1], [1100, 1100, 2]]))
    assert "matrix" not in (run_dir / layout.CONFUSION_FILE).read_text()
    app = _app(ana_dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        header = str(screen.query_one("#analysis-header").render())
        assert f"{n} classes" in header and "5/6 right" in header
        table = screen.query_one("#class-table")
        first = [str(c) for c in table.get_row_at(0)]
        assert first[:3] == ["c0007", "75.00", "3/4"]
        pairs = screen.query_one("#pair-list")
        assert pairs.option_count == 1 and "c0007 → c1100" in str(pairs.get_option_at_index(0).prompt)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _hostile_pictures(folder: Path) -> dict[str, Path]:
    """A truncated JPEG, a PNG whose header claims 60,000 x 60,000 pixels (no pixel data: a
    decompression bomb in 60 bytes) and a PNG with a 4 MB compressed text chunk."""
    import io
    import struct
    import zlib

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    sig = b"\x89PNG\r\n\x1a\n"
    bomb = folder / "bomb.png"
    bomb.write_bytes(sig + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + _png_chunk(b"IEND", b""))
    good = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(good, "PNG")
    raw = good.getvalue()
    text = _png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * (4 << 20)))
    chunky = folder / "text.png"
    chunky.write_bytes(raw[:33] + text + raw[33:])  # after IHDR (8 + 25 bytes)
    return {"truncated": truncated, "bomb": bomb, "text": chunky}


async def test_pictures_that_cannot_be_shown_are_placeholders_with_the_reason(ana_dirs):
    """Issue 21 item 6: a truncated JPEG, a header-only decompression bomb and a PNG with an
    oversized text chunk used to crash the whole TUI in the Classes view."""
    run_dir = make_analysis_run(ana_dirs.runs)
    bad = _hostile_pictures(ana_dirs.runs.parent / "hostile")
    pred = layout.read_json(run_dir / layout.PREDICTIONS_FILE)
    files = list(pred["file"])
    for k, which in zip((5, 6, 7), ("truncated", "bomb", "text")):  # the three buntings taken for cardinals
        files[k] = str(bad[which])
    layout.write_json(run_dir / layout.PREDICTIONS_FILE, {**pred, "file": files})
    app = _app(ana_dirs)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        assert [Path(item["file"]).name for item in screen.shown] == ["truncated.jpg", "bomb.png", "text.png"]
        await pilot.pause()
        await pilot.pause()
        assert app.is_running and app.screen is screen
        tiles = [str(p.render()) for p in screen.query(".picture")]
        assert len(tiles) == 3 and not any(type(p).__name__ == "HalfcellImage" for p in screen.query(".picture"))
        assert "truncated" in tiles[0].lower()
        assert "3600000000 pixels" in tiles[1] and "bomb" in tiles[1]
        assert "text" in tiles[2].lower()
        await pilot.press("down")  # the next pair still draws its pictures
        await pilot.pause()
        assert [type(p).__name__ for p in screen.query(".picture")] == ["HalfcellImage", "HalfcellImage"]
