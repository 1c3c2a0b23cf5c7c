"""mmgt: Motion-Mask Guided Two-stage co-speech gesture video generation (Wang et al., TCSVT 2025)."""

__version__ = "0.1.0"
