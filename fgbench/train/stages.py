"""A recipe's stages, resolved: the first from the top-level sections, the rest from ``[[stages]]``.

Decisions:

* Stage 0 is the recipe itself (``data.*`` sizes, ``schedule.*``, ``optim.lr``). A later stage sets
  only what changes: sizes and batch size default to the previous stage's ("as before"); LR,
  min LR, warm-up and the cosine's hold default to the first stage's ("as the first stage"), as the
  recipe documents; a cosine period applies to the first stage only.
* ``schedule.max_steps`` bounds the first stage only; its epoch count becomes
  ``ceil(max_steps / steps_per_epoch)`` and the last of those epochs may be partial.
* Epochs are numbered globally from 1 across stages, as the metrics stream wants.
* A stage's training preprocessing (``train_crop``) is as the stage before unless set, except that a
  ``trainable = "bn_fc"`` stage defaults to ``test`` (the test preprocessing, no augmentation), as
  the FixRes paper fine-tunes BN and the classifier at the test resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from fgbench.errors import UserError


def steps_per_epoch(n_images: int, batch_size: int, drop_last: bool) -> int:
    return n_images // batch_size if drop_last else math.ceil(n_images / batch_size)


@dataclass(frozen=True)
class StageSpec:
    index: int
    name: str
    epochs: int
    first_epoch: int  # global, 1-based
    train_size: int
    test_size: int
    lr: float
    min_lr: float | None
    warmup_epochs: float
    warmup_steps: int | None
    batch_size: int
    steps_per_epoch: int
    init_from: str = "last_raw"
    trainable: Literal["all", "bn_fc"] = "all"
    new_optimizer: bool = True
    max_steps: int | None = None
    hold_epochs: float = 0.0
    period_epochs: float | None = None
    train_crop: str | None = None  # None: data.train_crop; "test": the test preprocessing
    warmup_in_period: bool = False  # cosine: the warm-up is part of the period (timm)

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs - 1

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps else self.epochs * self.steps_per_epoch


def resolve_stages(recipe, n_train: int) -> list[StageSpec]:
    data, sched = recipe.data, recipe.schedule
    spe = steps_per_epoch(n_train, data.batch_size, data.drop_last)
    if spe < 1:
        raise UserError(f"data.batch_size: {data.batch_size} is larger than the {n_train} training images")
    epochs = sched.epochs
    if sched.max_steps:
        epochs = math.ceil(sched.max_steps / spe)
    first = StageSpec(
        index=0, name="main", epochs=epochs, first_epoch=1, train_size=data.train_size, test_size=data.test_size,
        lr=recipe.optim.lr, min_lr=getattr(sched, "min_lr", None), warmup_epochs=sched.warmup_epochs,
        warmup_steps=sched.warmup_steps, batch_size=data.batch_size, steps_per_epoch=spe, max_steps=sched.max_steps,
        hold_epochs=getattr(sched, "hold_epochs", 0.0), period_epochs=getattr(sched, "period_epochs", None),
        warmup_in_period=getattr(sched, "warmup_in_period", False),
    )
    out = [first]
    for i, st in enumerate(recipe.stages, start=1):
        prev = out[-1]
        bs = st.batch_size or prev.batch_size
        spe = steps_per_epoch(n_train, bs, data.drop_last)
        if spe < 1:
            raise UserError(f"stages[{i - 1}].batch_size: {bs} is larger than the {n_train} training images")
        if st.init_from.endswith("_ema") and not recipe.ema.enabled:
            raise UserError(f"stages[{i - 1}].init_from: {st.init_from!r} needs ema.enabled = true")
        warm_override = st.warmup_epochs is not None
        out.append(StageSpec(
            index=i, name=st.name, epochs=st.epochs, first_epoch=prev.last_epoch + 1,
            train_size=st.train_size or prev.train_size, test_size=st.test_size or prev.test_size,
            lr=st.lr if st.lr is not None else first.lr,
            min_lr=st.min_lr if st.min_lr is not None else first.min_lr,
            warmup_epochs=st.warmup_epochs if warm_override else first.warmup_epochs,
            warmup_steps=None if warm_override else first.warmup_steps,
            batch_size=bs, steps_per_epoch=spe, init_from=st.init_from, trainable=st.trainable,
            new_optimizer=st.new_optimizer, hold_epochs=first.hold_epochs,
            train_crop=st.train_crop or ("test" if st.trainable == "bn_fc" else prev.train_crop),
            warmup_in_period=first.warmup_in_period,
        ))
    return out
