"""Hugging Face Hub integration (installed as `keras_vit.hf_integration`).

Named weights, `from_pretrained` by repo id, `push_to_hub` and model cards
arrive with the Hub issue; this subpackage depends on `keras_vit.conversion`.
"""
