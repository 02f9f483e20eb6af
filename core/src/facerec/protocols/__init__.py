"""Evaluation protocols: pairs, identification, IJB templates and the synthetic ones (import submodules directly)."""
