"""The trainer (engine zone: imports torch and torchvision, never textual).

Modules, from the inside out:

* ``schedule`` (LR as a pure function of the step), ``ema``, ``losses``, ``mix``, ``optim``:
  the pieces a step needs, each built from one recipe section;
* ``loop``: ``train_one_epoch`` and ``evaluate``, returning plain dicts;
* ``stages``: the recipe's stages resolved (sizes, LR, epochs);
* ``trainer``: the outer loop (evaluation, model selection, checkpoints, summary, events);
* ``checkpoint``: atomic, ``weights_only``-loadable checkpoints with RNG state;
* ``progress``: the terminal bar / plain lines;
* ``runner``: ``fgbench run`` itself (argument handling, run directory, signals, exit codes);
* ``models`` (a separate package): the network builder.

Importing ``fgbench.train`` imports nothing heavy; the submodules do.
"""
