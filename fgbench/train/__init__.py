"""The trainer (engine zone: imports torch and torchvision, never textual).

Modules, from the inside out:

* ``schedule`` (LR as a pure function of the step), ``ema``, ``losses``, ``mix``, ``optim``:
  the pieces a step needs, each built from one recipe section;
* ``loop``: ``train_one_epoch`` and ``evaluate``, returning plain dicts;
* ``stages``: the recipe's stages resolved (sizes, LR, epochs);
* ``selection``: each model's best epoch by ``eval.select_on`` and which model is the result;
* ``trainer``: the outer loop (evaluation, checkpoints, the typed summary, events);
* ``checkpoint``: atomic, ``weights_only``-loadable checkpoints with RNG state;
* ``progress``: the terminal bar / plain lines;
* ``plan``: the ``RunPlan`` built once before anything is written (recipe, device, splits, stages,
  model, resume point);
* ``runner``: ``fgbench run`` itself, the front door over request, plan and session (exit codes,
  torchrun launcher and workers, ``train(plan, session)``);
* ``models`` (a separate package): the network builder.

Importing ``fgbench.train`` imports nothing heavy; the submodules do.
"""
