"""Data preparation for the real recipe: ``python -m timechat.data.prepare <step> ...``.

One module per step, each a plain function (no argparse; the command line is ``__main__.py``):

* `compress` — re-encode videos at ``--fps`` (6 for YouCook2 / ActivityNet) with a 224 shorter side
  (the original's ``utils/compress_video_data.py``);
* `audio`, `asr`, `clean_asr` — extract 16 kHz audio, transcribe with whisper from a local
  checkpoint, clean the transcripts (``utils/asr/*``);
* `audit` — report records whose video is missing, unreadable, empty or too short; write the
  usable ones;
* `valley`, `hirest`, `coco_gt` — ``utils/process_valley.py``, ``utils/process_hirest.py``,
  ``utils/get_coco_format.py``.

Every step runs through `runner.run_tasks`: ``--workers``, resume (finished outputs are skipped),
progress bar with ETA, atomic outputs, a summary and a JSON report beside the outputs.
"""
