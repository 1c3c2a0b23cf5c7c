"""Training and in-training validation (layer 5). Where things are:

* shared by every entry point: ``common`` (run start and resume, checkpoints, logs, optimiser, export, per-step
  randomness) and ``preflight`` (what a run or an evaluation needs, checked before anything is written);
* stage 1 (audio -> poses): ``train_stage1`` (``mmgt train stage1``), ``validate_stage1`` (its validation and
  ``mmgt eval stage1``), ``train_pose_ae`` (the FGD pose autoencoder);
* stage 2 (poses -> video): ``train_vae`` (the tiny VAE), ``train_stage2`` (``mmgt train stage2 --step image|video``),
  ``stage2_objective`` (the loss of both steps), ``stage2_components`` (the trainee, components and freeze policy),
  ``validate_stage2`` (its validation clip and ``mmgt eval stage2``).
"""
