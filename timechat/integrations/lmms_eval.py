"""TimeChat as an lmms-eval model (`pip install 'timechat[lmms]'`).

    lmms-eval --model timechat --model_args pretrained=/path/to/timechat_dir,batch_size=8 \
        --tasks charades_sta --batch_size 1

The package registers the model with lmms-eval through the `lmms_eval.models` entry point
(`lmms_manifest`), so lmms-eval itself needs no change. `TimeChatLMMS` follows lmms-eval's `lmms`
base class: `generate_until(requests)` takes `Instance`s whose `.args` are `(context, gen_kwargs,
doc_to_visual, doc_id, task, split)`; the video path comes from
`doc_to_visual(self.task_dict[task][split][doc_id])`. Answers come from this project's batched
inference (`timechat.eval.inference.InferenceEngine.answer_batch`): uniform frame sampling with the
timestamp sentences, the chat template, left-padded batched greedy decoding.

The model is a pretrained directory (`pretrained=`), or a config whose `model` section names the
original files (`model_config=`). Only generation is supported: `loglikelihood` raises.

Without lmms-eval installed the class still imports (on a stand-in base with the same attributes)
so that it can be driven with request objects of the same shape, as the tests do.
"""

from __future__ import annotations

import json
import logging
import tempfile
from typing import Any, Sequence

import torch

logger = logging.getLogger(__name__)

try:  # the real base class when lmms-eval is installed
    from lmms_eval.api.model import lmms as _LmmsBase

    HAVE_LMMS_EVAL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_LMMS_EVAL = False

    class _LmmsBase:  # type: ignore[no-redef]
        """The attributes of `lmms_eval.api.model.lmms` the evaluator uses (rank, world size, task_dict)."""

        def __init__(self) -> None:
            self._rank = 0
            self._world_size = 1
            self.task_dict: dict[str, Any] = {}

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size


MODEL_ID = "timechat"


def lmms_manifest() -> Any:
    """The `lmms_eval.models` entry point: TimeChat's `ModelManifest` (lmms-eval >= 0.5)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.TimeChatLMMS")


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class TimeChatLMMS(_LmmsBase):
    """TimeChat behind lmms-eval's model interface.

    Args:
        pretrained: a directory written by `TimeChat.save_pretrained` / `scripts/convert_checkpoint.py`.
        model_config: instead, a YAML config whose `model` section names the original files.
        device: 'cpu', 'cuda', 'cuda:N' (default: cuda if available).
        batch_size: requests decoded and generated together.
        num_frames: frames sampled uniformly per video (TimeChat: 96).
        max_new_tokens: default when a request's gen_kwargs do not say.
        precision: autocast dtype on GPU ('bf16', 'fp16', 'fp32').
        lora_alpha: inference LoRA alpha (the original used 20 for the QA benchmarks).
        system: system text name or text (`timechat.eval.tasks.common.resolve_system`).
        timestamp_tokenizer: force 'llama' or 'bert' for the frame timestamps.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        model_config: str | None = None,
        device: str | None = None,
        batch_size: int | str = 1,
        num_frames: int | str = 96,
        max_new_tokens: int | str = 512,
        precision: str = "bf16",
        lora_alpha: float | str | None = None,
        system: str = "evaluate",
        timestamp_tokenizer: str | None = None,
        max_context: int | str = 3000,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"TimeChatLMMS: unknown model_args {sorted(kwargs)}")
        if (pretrained is None) == (model_config is None):
            raise ValueError("TimeChatLMMS needs exactly one of pretrained=DIR or model_config=CONFIG.yaml")
        from timechat.config import EvalConfig
        from timechat.factory import build_model_and_tokenizers

        if pretrained is not None:
            section: dict[str, Any] = {"pretrained": str(pretrained)}
        else:
            from timechat.config import load_config, resolve_config

            section = resolve_config(load_config(model_config))["model"]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.tokenizers, _ = build_model_and_tokenizers(section)
        if lora_alpha is not None:
            model.set_lora_alpha(float(lora_alpha))
        self.model = model.eval().to(self.device)
        self.batch_size = int(batch_size)
        self.eval_cfg = EvalConfig(
            system=system, num_frames=int(num_frames), batch_size=self.batch_size, max_new_tokens=int(max_new_tokens),
            precision=precision if self.device.type == "cuda" else "fp32", num_workers=0,
            timestamp_tokenizer=timestamp_tokenizer, max_context=int(max_context),
        )
        self._scratch = tempfile.TemporaryDirectory(prefix="timechat_lmms_")

    # -- lmms interface ---------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("TimeChat's lmms-eval adapter supports generation tasks only (generate_until)")

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError("TimeChat's lmms-eval adapter does not implement multi-round generation")

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """Answer each request; the answers come back in request order.

        Requests with the same generation settings are batched together (`batch_size`). A video that
        cannot be decoded gives an empty answer (and a warning), as a failed sample does in evaluate.py.
        """
        from timechat.eval.inference import EvalSample

        parsed = []
        for i, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            visuals = [v for v in (visuals or []) if v is not None]
            if len(visuals) != 1 or not isinstance(visuals[0], str):
                raise ValueError(f"request {i} ({task}/{split}/{doc_id}): TimeChat takes one video path, got {visuals!r}")
            gen = dict(gen_kwargs or {})
            until = gen.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            sample = EvalSample(id=f"{task}/{split}/{doc_id}#{i}", video=visuals[0], prompt=str(context))
            parsed.append((sample, self._decoding(gen), until))

        answers: list[str | None] = [None] * len(parsed)
        groups: dict[str, list[int]] = {}
        for i, (_, decoding, _) in enumerate(parsed):
            groups.setdefault(json.dumps(decoding, sort_keys=True), []).append(i)
        for key, members in groups.items():
            engine = self._engine(json.loads(key))
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                samples = [parsed[i][0] for i in chunk]
                entries = self._answer(engine, samples)
                for i, entry in zip(chunk, entries):
                    if "error" in entry:
                        logger.warning("%s: %s", entry["id"], entry["error"])
                    answers[i] = _cut(entry.get("answer", ""), parsed[i][2])
        return [a if a is not None else "" for a in answers]

    # -- helpers ----------------------------------------------------------------------------------
    def _decoding(self, gen: dict[str, Any]) -> dict[str, Any]:
        """lmms-eval gen_kwargs -> this project's decoding settings (temperature 0 means greedy)."""
        temperature = float(gen.get("temperature", 0.0) or 0.0)
        do_sample = _as_bool(gen.get("do_sample", False)) and temperature > 0
        if int(gen.get("num_beams", 1) or 1) > 1:
            logger.warning("TimeChat decodes greedily or by sampling; num_beams=%s is ignored", gen["num_beams"])
        return {"max_new_tokens": int(gen.get("max_new_tokens", self.eval_cfg.max_new_tokens)),
                "do_sample": do_sample, "temperature": temperature if do_sample else 1.0,
                "top_p": float(gen.get("top_p", 1.0) or 1.0) if do_sample else 1.0}

    def _engine(self, decoding: dict[str, Any]):
        from dataclasses import replace

        from timechat.eval.inference import InferenceEngine

        cfg = replace(self.eval_cfg, **decoding)
        return InferenceEngine(self.model, self.tokenizers, cfg, self._scratch.name, self.device,
                               rank=0, world_size=1)

    def _answer(self, engine: Any, samples: list[Any]) -> list[dict[str, Any]]:
        from timechat.eval.inference import VideoItems

        items = VideoItems(samples, self.eval_cfg.num_frames, self.model.cfg.vision.image_size)
        with torch.no_grad():
            return engine.answer_batch(samples, [items[j] for j in range(len(samples))])


def _cut(text: str, until: Sequence[str]) -> str:
    """The answer up to the first stop string (lmms-eval's `until`)."""
    for stop in until:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text
