"""Pose layer: keypoint layout, converters, detection, normalisation, rendering and THE motion-mask definition."""
