"""pipelines layer: stage 1 ``audio_to_pose``, stage 2 ``pose_to_video`` (with ``context_windows``), both stages
``mmgt_pipeline`` (its folder format in ``model_folder``); the sampling defaults of every preset in
``sampling_defaults``; the reference image in ``reference``."""
