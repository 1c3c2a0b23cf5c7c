"""The synthetic speaker world: procedural speech, motion caused by it, and flat-shaded figures (docs/synthetic.md).

No pretrained weights or GPU are needed to train both mmgt stages on it, and "does the motion follow the audio?" has
a measurable answer because every coupling is defined on the audio itself.
"""

from mmgt.data.synthetic.body import BodyShape, random_body
from mmgt.data.synthetic.figure import Appearance, draw_figure, draw_frames, random_appearance
from mmgt.data.synthetic.speaker import AudioDrive, animate, audio_drive, rest_pose
from mmgt.data.synthetic.speech import (
    VOICES,
    SpeechClip,
    Syllable,
    Voice,
    detect_syllables,
    espeak_speech,
    mix_tts,
    random_voice,
    synthesize_speech,
)
from mmgt.data.synthetic.world import (
    Identity,
    SynthClip,
    generate_clip,
    make_identities,
    reference_image,
    write_synthetic_dataset,
)

__all__ = [
    "VOICES",
    "Appearance",
    "AudioDrive",
    "BodyShape",
    "Identity",
    "SpeechClip",
    "Syllable",
    "SynthClip",
    "Voice",
    "animate",
    "audio_drive",
    "detect_syllables",
    "draw_figure",
    "draw_frames",
    "espeak_speech",
    "generate_clip",
    "make_identities",
    "mix_tts",
    "random_appearance",
    "random_body",
    "random_voice",
    "reference_image",
    "rest_pose",
    "synthesize_speech",
    "write_synthetic_dataset",
]
