"""Evaluation tasks, one module each: its prompts, answer parser, annotation reader and scoring.

`timechat.registry.TASKS` names the task classes: `dense_captioning.DenseCaptioningTask` (dvc),
`grounding.GroundingTask` (tvg), `highlights.HighlightTask` (vhd), `mvbench.MVBenchTask`,
`tempcompass.TempCompassTask`, `egoschema.EgoSchemaTask` and `videomme.VideoMMETask`. What they
share lives in `base` (the task plumbing) and `common` (parse results, number patterns, prompt
filling, option letters); `prompts` gathers the tasks' prompt tables for lookup by name.

Every string in the prompt tables is data the released checkpoint saw, so the original's typos
(``seonds``, ``An specific example``, ``' .``) and oddities are kept verbatim; bugs are documented
next to them and, where it makes sense, a fixed variant is offered under a different name.
"""
