"""models layer: the networks. Stage 1: ``gesture_denoiser`` (SMGA, with ``rotary``). Stage 2: ``denoising_unet``
(ReferenceNet read/write, pose residual, motion modules), ``reference_attention``, ``audio_attention`` (MM-HAA),
``audio_projection``, ``pose_guider``, ``attention_inputs`` and the presets in ``stage2_presets``."""
