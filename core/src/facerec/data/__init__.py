"""Dataset formats, the synthetic face renderer, transforms and alignment (import submodules directly)."""
