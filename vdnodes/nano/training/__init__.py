"""Training vd-nano from scratch: image VAE, CLIP, Optimus, then the four-flow UNet.

One module per responsibility, in the order a run meets them:
- ``budget``: steps, batch sizes and learning rates per stage (``"full"``, ``"smoke"``), and the
  seed of every step;
- ``data``: what the stages train on: captions and fragments, which scenes a text describes,
  recoloured, restyled and twin scenes, I2T2I edit cases, shape masks, rendered batches;
- ``stage``: the base class (``parameters()``, ``step_loss(step)``, ``finish()``...), the
  optimiser, and the fp16 rounding each encoder stage ends with, so the stages after it train
  against exactly the shipped encoders;
- the four stages, ``vae_stage``, ``clip_stage``, ``optimus_stage``, ``unet_stage``, and
  ``stages`` (name -> class);
- ``evaluate``: a quick self-check of every flow with the rule-based checker;
- ``checkpoints``: what each stage's checkpoint depends on, and saving / loading it;
  ``reuse``: finished encoder stages taken from a vd-nano file;
- ``runner``: the loop (deterministic, resumable, tqdm progress) and ``train_nano``, the entry
  point; ``report``: per-stage comparison with a reference file, hosts, ``train-report.json``;
  ``cli``: ``vdnodes train-nano``.

Every module stays in eval mode (no dropout: the data is unlimited, and draws stay
deterministic). Loading and saving the shipped file is ``vdnodes.nano.weights`` (``load_nano``,
``save_nano``). What it is not: no model code (``vdnodes.model``), no scene drawing
(``vdnodes.nano.scenes``).
"""
