"""User-facing jobs on top of the pipelines: file-to-file generation, the bundled demo, the Gradio app."""
