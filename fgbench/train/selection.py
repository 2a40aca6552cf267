"""Model selection: each model's best epoch by ``eval.select_on``, and which model is the result.

``eval.select_on``:

* ``"val"`` / ``"test"``: a model's best epoch is the one with the highest top-1 on that split; a
  tie keeps the earlier epoch. The selected model is the EMA when its best score is at least the
  raw model's.
* ``"last"``: every evaluation replaces the record (no score is compared, so none is kept); the
  EMA is selected unless both models have validation numbers and the raw model's is higher.

The state (in ``last.pt`` and ``best.pt``) is plain JSON-able data. Checkpoints written before this
module kept a ``score_inf`` flag for ``"last"`` (an infinite score standing for "always
replace"); they load the same, the flag is simply not needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MODELS = ("raw", "ema")


@dataclass
class BestTracker:
    select_on: str
    has_ema: bool
    stage: int = 0
    best: dict[str, dict | None] = field(default_factory=lambda: {"raw": None, "ema": None})
    """model -> {epoch, score (None under "last"), val_top1, val_topk, test_top1, test_topk}"""
    confusion: dict[str, "list | torch.Tensor | None"] = field(default_factory=lambda: {"raw": None, "ema": None})
    """model -> the test confusion matrix at its best epoch (a dense list, or the sparse cells' tensor)"""

    def _score(self, res: dict) -> float | None:
        match self.select_on:
            case "val":
                return res["val"]["top1"] if res.get("val") else None
            case "test":
                return res["test"]["top1"]
        raise AssertionError(self.select_on)

    def _improves(self, model: str, res: dict) -> tuple[bool, float | None]:
        if self.select_on == "last":
            return True, None
        score = self._score(res)
        if score is None:
            return False, None
        cur = self.best.get(model)
        return cur is None or score > cur["score"], score

    def update(self, epoch: int, results: dict[str, Any]) -> list[str]:
        """Record one evaluated epoch; returns the models ("raw"/"ema") whose best improved."""
        improved = []
        for model, res in results.items():
            if res is None:
                continue
            better, score = self._improves(model, res)
            if not better:
                continue
            val = res.get("val")
            self.best[model] = {
                "epoch": epoch,
                "score": score,
                "val_top1": val["top1"] if val else None,
                "val_topk": val["topk"] if val else None,
                "test_top1": res["test"]["top1"],
                "test_topk": res["test"]["topk"],
            }
            conf = res["test"]["confusion"]
            # past DENSE_MAX_CLASSES only the non-zero cells: a 10,000-class matrix as Python lists
            # (and in every checkpoint) would take gigabytes
            self.confusion[model] = conf.tolist() if conf is not None else res["test"]["confusion_cells"].clone()
            improved.append(model)
        return improved

    def selected(self) -> str:
        raw, ema = self.best.get("raw"), self.best.get("ema")
        if not self.has_ema or ema is None:
            return "raw"
        if raw is None:
            return "ema"
        if self.select_on == "last":
            if raw.get("val_top1") is not None and ema.get("val_top1") is not None:
                return "ema" if ema["val_top1"] >= raw["val_top1"] else "raw"
            return "ema"
        return "ema" if ema["score"] >= raw["score"] else "raw"

    def public(self, model: str) -> dict | None:
        """One model's best as ``summary.json`` holds it (``ModelBest``)."""
        b = self.best.get(model)
        if b is None:
            return None
        return {"epoch": b["epoch"], "val_top1": b["val_top1"], "test_top1": b["test_top1"], "test_topk": b["test_topk"]}

    def state_dict(self) -> dict:
        return {"select_on": self.select_on, "has_ema": self.has_ema, "stage": self.stage,
                "best": {k: (None if v is None else dict(v)) for k, v in self.best.items()},
                "confusion": dict(self.confusion)}

    def load_state_dict(self, state: dict) -> None:
        """Also reads the state of older checkpoints (``score_inf``, unused now: see the module)."""
        self.stage = int(state["stage"])
        self.best = {k: (None if v is None else dict(v)) for k, v in state["best"].items()}
        if self.select_on == "last":
            for v in self.best.values():
                if v is not None:
                    v["score"] = None
        self.confusion = dict(state["confusion"])
