"""Distillation and evaluation: teacher -> student training of pose backbones on real face crops.

``headpose distill`` and ``headpose eval`` (:mod:`.cli`). Crop sets (:mod:`.cropset`), teachers
(:mod:`.teachers`), training (:mod:`.distill`), evaluation (:mod:`.evaluate`); the label maths both
share is :mod:`.labels`. May import ``headpose.convert`` (models, checkpoints, face data) and
``headpose.runtime``; nothing else imports this package.
"""
