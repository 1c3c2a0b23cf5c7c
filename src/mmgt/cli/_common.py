"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``mmgt NAME ...``) and return its own subparsers object."""
    group = subparsers.add_parser(name, help=help, description=help)
    group.set_defaults(_group_parser=group)
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def load_stage2_pipeline(model, encoder=None):
    """The stage-2 pipeline in folder ``model`` (a clear error if it is not one), with its wav2vec2 folder attached."""
    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
    from mmgt.utils.model_folders import require_pipeline_folder

    require_pipeline_folder(model, "stage-2 model")
    pipe = PoseToVideoPipeline.from_pretrained(model)
    if encoder is not None:
        kind = dict(layers="all", interpolate="before_transformer", what="wav2vec2")  # the stage-2 recipe (spec §5.4)
        pipe.set_audio_encoder(SpeechEncoder.from_pretrained(encoder, **kind))
    return pipe
