"""Reference parity: this implementation compared with golden outputs of the original TimeChat.

* `compare` — `ParityRow` and the exact / close comparisons every check is made of;
* `model` — the model stages against a ``reference_model`` fixture (stages captured with hooks);
* `data` — the data pipeline against ``reference_data`` (and the data side of ``reference_model``);
* `metrics` — the TVG / VHD / DVC metric functions against ``reference_metrics``.

The harness lives in the package, not under ``tests/``, because ``scripts/check_reference_parity.py``
and the tests both import it and it must work from an installed package, on fixture sets the
tests never saw. Nothing in the training, data or eval paths imports it.
"""
