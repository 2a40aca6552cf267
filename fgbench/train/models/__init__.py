"""Model building for the trainer (engine zone: imports torch and torchvision).

The API the trainer codes against:

* ``build_model(model_cfg, num_classes, data_cfg=None) -> BuiltModel(model, report)``
* ``set_trainable(model, "all" | "bn_fc")``
* ``forward_train(model, x) -> (logits, [aux logits])``
* ``extra_metrics(model) -> dict`` (e.g. ``{"taus": [...]}``)
* ``classifier(model) -> nn.Module``
* ``channels_last_for(runtime.channels_last, arch, device_type) -> (bool, why)``

See ``build.py`` for the order in which a recipe's model options are applied.
"""

from .build import BuiltModel, build_model, channels_last_for, classifier, extra_metrics, forward_train, set_trainable, unwrap

__all__ = ["BuiltModel", "build_model", "channels_last_for", "classifier", "extra_metrics", "forward_train", "set_trainable", "unwrap"]
