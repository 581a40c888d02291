"""Checkpoint conversion (installed as `keras_vit.conversion`).

Hugging Face ViT state dicts and `config.json` to Keras weights and back, in
numpy; it arrives with the conversion issue.
"""
