"""Summary.headline(): the one rule for a run's numbers (runs list/compare/show, the end of
`fgbench run`, the TUI's tables). Expected values are read off the summaries below by hand."""

from __future__ import annotations

from fgbench.rundir.summary import Summary

SUMMARY = {
    "run_id": "r1", "epochs_done": 12, "total_epochs": 20, "step": 600, "duration_s": 75, "images_per_s": 1000,
    "peak_mem_mb": None, "select_on": "val", "top_k": 5,
    "best": {"raw": {"epoch": 10, "val_top1": 18.4, "test_top1": 19.0, "test_topk": 40},
             "ema": {"epoch": 11, "val_top1": 20.0, "test_top1": 20.7, "test_topk": 41.5}},
    "last": {"epoch": 12, "raw": {"val_top1": 17.0, "test_top1": 18.5, "test_topk": 39.0}, "ema": None},
    "final_test_sizes": {"448": {"raw": 22.0, "ema": None}, "64": {"raw": 10, "ema": 11.0}},
}


def test_each_model_at_its_own_best_epoch_side_by_side_never_the_better_one():
    h = Summary.from_json(SUMMARY).headline()
    # raw's best is epoch 10 even though the EMA's numbers are higher: no "whichever is better"
    assert (h["best_epoch"], h["val_top1"], h["test_top1_best"], h["test_topk_best"]) == (10, 18.4, 19.0, 40.0)
    assert (h["ema_best_epoch"], h["ema_val_top1"], h["ema_test_top1_best"]) == (11, 20.0, 20.7)
    assert (h["test_top1_last"], h["ema_test_top1_last"]) == (18.5, None)
    assert (h["epochs_done"], h["total_epochs"], h["step"], h["select_on"]) == (12, 20, 600, "val")
    assert (h["duration_s"], h["images_per_s"], h["peak_mem_mb"]) == (75.0, 1000.0, None)
    assert isinstance(h["test_topk_best"], float) and isinstance(h["duration_s"], float)  # ints read as numbers


def test_extra_test_sizes_come_in_size_order():
    h = Summary.from_json(SUMMARY).headline()
    sizes = [k for k in h if "@" in k]
    assert sizes == ["test@64", "ema_test@64", "test@448", "ema_test@448"]  # 64 before 448, not as strings
    assert (h["test@64"], h["ema_test@64"], h["test@448"], h["ema_test@448"]) == (10.0, 11.0, 22.0, None)


def test_a_run_without_a_summary_has_every_number_absent():
    h = Summary().headline()
    assert set(h) == {"epochs_done", "total_epochs", "best_epoch", "val_top1", "test_top1_best", "test_topk_best",
                      "test_top1_last", "ema_best_epoch", "ema_val_top1", "ema_test_top1_best",
                      "ema_test_top1_last", "duration_s", "images_per_s", "peak_mem_mb", "data_wait_frac", "gpu_util",
                      "step", "select_on"}
    assert all(v is None for v in h.values())
    only_raw = Summary.from_json({"best": {"raw": {"val_top1": 50.0, "test_top1": 49.0}, "ema": None}}).headline()
    assert (only_raw["val_top1"], only_raw["test_top1_best"], only_raw["ema_val_top1"]) == (50.0, 49.0, None)
