"""Write the demo's reference speaker (speaker.png) and its rest pose (speaker.npz) from a synthetic dataset.

Usage: python scripts/demo_speaker.py SYNTH_DATASET OUT_DIR [--identity 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from mmgt.data.synthetic.body import BodyShape
from mmgt.data.synthetic.speaker import rest_pose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="folder written by `mmgt synth`")
    parser.add_argument("out", type=Path, help="demo assets folder")
    parser.add_argument("--identity", type=int, default=0, help="which speaker (default 0)")
    args = parser.parse_args()
    config = json.loads((args.dataset / "synth_config.json").read_text())
    size, identity = config["size"], config["identities"][args.identity]
    body = BodyShape(**identity["body"])
    args.out.mkdir(parents=True, exist_ok=True)
    Image.open(args.dataset / "identities" / f"{identity['name']}.png").convert("RGB").save(args.out / "speaker.png")
    rest_pose(body, size).save(args.out / "speaker.npz")
    print(f"{args.out}: speaker.png, speaker.npz ({identity['name']}, {size} px)")


if __name__ == "__main__":
    main()
