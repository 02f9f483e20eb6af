"""TRANSITIONAL: the old name of :mod:`facerec.recipes`, kept only while facerec_dvg still imports
``facerec.pipeline``; it goes once facerec_dvg is migrated. Nothing else may import it."""

from . import registry  # noqa: F401 - facerec_dvg's work in progress reads ``P.registry``
from .recipes import (DEFAULT_DATASET, DEFAULT_HEAD, DEFAULT_PROTOCOL, PARAM_KINDS, PRESETS,  # noqa: F401
                      PipelineConfig, RunDir, build, build_backbone, build_dataset, build_generator, build_head,
                      build_protocols, canonical_size, evaluate_protocols, format_metrics, image_grid,
                      markdown_table, parse_params, resolve_recipe, run_pipeline, save_backbone, train_config,
                      validate, write_summary)
