"""The lmms-eval adapter, driven with lmms-eval's request objects on the tiny model.

With lmms-eval installed the requests are its own `Instance`s and the adapter subclasses its `lmms`
base class; without it (the default test environment) they are stand-ins with the same `.args`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from timechat.factory import ASSETS_DIR, build_model_and_tokenizers
from timechat.integrations import lmms_eval as adapter

TASK, SPLIT = "charades_sta", "test"


@dataclass
class StandInInstance:
    """The part of `lmms_eval.api.instance.Instance` an lmms model reads: `.args`."""

    arguments: tuple

    @property
    def args(self) -> tuple:
        return self.arguments


def make_request(kind: str, context: str, gen_kwargs: dict, doc_id: int, idx: int):
    args = (context, gen_kwargs, lambda doc: [doc["video"]], doc_id, TASK, SPLIT)
    if kind == "lmms_eval":
        from lmms_eval.api.instance import Instance

        return Instance(request_type="generate_until", arguments=args, idx=idx,
                        metadata={"task": TASK, "doc_id": doc_id, "repeats": 1})
    return StandInInstance(args)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("lmms")
    generate_synthetic_dataset(root / "synthetic", num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0),
                               fps=4.0, size=32, max_events=1, min_event_duration=2.0)
    videos = sorted((root / "synthetic" / "videos" / "test").glob("*.mp4"))
    (root / "broken.mp4").write_bytes(b"not a video" * 50)
    torch.manual_seed(0)
    model, tokenizers, _ = build_model_and_tokenizers({"name": "timechat_tiny", "tokenizer": "builtin:tiny_tokenizer",
                                                       "bert_tokenizer": "builtin:tiny_bert"})
    directory = model.save_pretrained(root / "hf", llama_tokenizer=ASSETS_DIR / "tiny_tokenizer",
                                      bert_tokenizer=ASSETS_DIR / "tiny_bert")
    docs = {i: {"video": str(v)} for i, v in enumerate(videos)}
    docs[len(docs)] = {"video": str(root / "broken.mp4")}
    return directory, docs


KINDS = ["stand_in", pytest.param("lmms_eval", marks=pytest.mark.skipif(not adapter.HAVE_LMMS_EVAL,
                                                                         reason="lmms-eval not installed"))]


@pytest.mark.parametrize("kind", KINDS)
def test_generate_until_batched_equals_one_by_one(setup, kind):
    directory, docs = setup
    lm1 = adapter.TimeChatLMMS(pretrained=str(directory), device="cpu", batch_size=1, num_frames=4, max_new_tokens=6)
    lm3 = adapter.TimeChatLMMS(pretrained=str(directory), device="cpu", batch_size=3, num_frames=4, max_new_tokens=6)
    if adapter.HAVE_LMMS_EVAL:
        from lmms_eval.api.model import lmms

        assert isinstance(lm3, lmms)
    for lm in (lm1, lm3):
        lm.task_dict = {TASK: {SPLIT: docs}}
    greedy = {"max_new_tokens": 6, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    short = {"max_new_tokens": 2, "temperature": 0}
    prompts = ["Find the moment: a red square appears.", "When does the blue circle move?",
               "Describe the video.", "What happens?"]
    requests = [make_request(kind, p, greedy if i != 2 else short, i, i) for i, p in enumerate(prompts)]
    batched = lm3.generate_until(requests)
    single = [lm1.generate_until([r])[0] for r in requests]
    assert batched == single and len(batched) == 4
    assert all(isinstance(a, str) for a in batched)
    assert batched[3] == ""  # the undecodable video: an empty answer, the run goes on
    assert batched[0] and batched[1]
    # max_new_tokens of the request is honoured: 2 tokens decode to a prefix of the 6-token answer
    long = lm1.generate_until([make_request(kind, prompts[2], greedy, 2, 9)])[0]
    tok = lm1.tokenizers.llama
    assert len(tok.encode(batched[2], add_special_tokens=False)) <= 3 and long.startswith(batched[2].strip()[:1])
    # `until` cuts the answer at the first stop string
    stop = batched[0][len(batched[0]) // 2:][:2]
    cut = lm1.generate_until([make_request(kind, prompts[0], {**greedy, "until": [stop]}, 0, 10)])[0]
    assert cut == batched[0].split(stop, 1)[0]


def test_bad_arguments_are_errors(setup):
    directory, docs = setup
    with pytest.raises(ValueError, match="exactly one of"):
        adapter.TimeChatLMMS()
    with pytest.raises(TypeError, match="unknown model_args"):
        adapter.TimeChatLMMS(pretrained=str(directory), conv_template="x")
    lm = adapter.TimeChatLMMS(pretrained=str(directory), device="cpu", num_frames=4)
    lm.task_dict = {TASK: {SPLIT: {0: {"video": None}}}}
    with pytest.raises(ValueError, match="one video path"):
        lm.generate_until([make_request("stand_in", "q", {}, 0, 0)])
    with pytest.raises(NotImplementedError):
        lm.loglikelihood([])


def test_lmms_extra_declares_the_entry_point():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("lmms-eval") for dep in project["optional-dependencies"]["lmms"])
    assert project["entry-points"]["lmms_eval.models"]["timechat"] == "timechat.integrations.lmms_eval:lmms_manifest"
