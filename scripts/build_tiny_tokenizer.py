#!/usr/bin/env python
"""Build the tiny tokenizers shipped in `timechat/assets/` (run once; the outputs are committed).

* `tiny_tokenizer/`: a LLaMA-style SentencePiece BPE model (vocabulary 768: <unk>/<s>/</s> = 0/1/2,
  256 byte-fallback pieces, split digits, identity normalisation, dummy prefix), trained on the
  synthetic dataset's instructions and answers, the evaluation prompts and the chat template, plus
  a Llama-2-chat `tokenizer_config.json` (`legacy: false`). `<ImageHere>` gets id 768. Every colour
  and shape name of the synthetic videos is one piece ("▁yellow", "▁bar"): grounding has to match
  the query's words to the frames, which is easier for the tiny model when each word is one token.
* `tiny_bert/vocab.txt`: a small uncased WordPiece vocabulary covering the timestamp sentences
  ("This frame is sampled at 12.5 second."), so the `fixed` mode can use a BERT-style tokenizer.

    python scripts/build_tiny_tokenizer.py [--out timechat/assets]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path



def corpus_lines() -> list[str]:
    from timechat.constants import BENCHMARK_SYSTEM, CHAT_SYSTEM, EVAL_SYSTEM
    from timechat.data.synthetic import EVENT_TYPES, SyntheticConfig, generate_synthetic_dataset
    from timechat.eval.tasks.egoschema import EGOSCHEMA_TEMPLATE
    from timechat.eval.tasks.mvbench import MVBENCH_ANSWER_INSTRUCTION
    from timechat.eval.tasks.prompts import TASK_PROMPTS
    from timechat.io import read_json

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_synthetic_dataset(tmp, SyntheticConfig(seed=0, num_train=60, num_val=0, num_test=0, size=32))
        for item in read_json(Path(summary.train_all)):
            for qa in item["QA"]:
                lines += [qa["q"], qa["a"]]
    # The evaluation texts: the system texts (twice, as ever), the QA templates and every task prompt.
    lines += [BENCHMARK_SYSTEM, CHAT_SYSTEM, EVAL_SYSTEM] + [EVAL_SYSTEM, CHAT_SYSTEM, BENCHMARK_SYSTEM]
    lines += [MVBENCH_ANSWER_INSTRUCTION, EGOSCHEMA_TEMPLATE]
    lines += list(TASK_PROMPTS.values())
    # Weight every colour and shape name (also those the default 4 event types leave out) so that
    # each becomes a single piece.
    for colour, _, shape in EVENT_TYPES:
        lines += [f"a {colour} {shape}"] * 30
    lines += ["[INST] <<SYS>>\n \n<</SYS>>\n\n<Video></Video> [/INST] </s><s>[INST]"] * 20
    for t in range(0, 200):
        lines.append(f"This frame is sampled at {t / 2:.1f} second. The video contains 16 frames sampled at "
                     f"{t / 4:.1f}, {t / 3:.1f} seconds. The given query happens in {t / 5:.1f} - {t / 2:.1f} seconds.")
    return lines


def build_sentencepiece(out: Path) -> None:
    import sentencepiece as spm

    from timechat.models.builders import TINY_VOCAB_SIZE

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=model, model_type="bpe", vocab_size=TINY_VOCAB_SIZE,
        byte_fallback=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        character_coverage=1.0, num_threads=1, max_sentence_length=8192, hard_vocab_limit=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    token = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": False,  # noqa: E731
                       "rstrip": False, "single_word": False}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": token("<s>"), "eos_token": token("</s>"),
        "unk_token": token("<unk>"), "pad_token": None, "legacy": False, "padding_side": "right",
        "clean_up_tokenization_spaces": False, "tokenizer_class": "LlamaTokenizer", "sp_model_kwargs": {},
    }, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2) + "\n")


def build_bert_vocab(out: Path) -> None:
    words = ["this", "frame", "is", "sampled", "at", "second", "seconds", "the", "video", "contains", "frames"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-"]
    vocab += words + [str(d) for d in range(100)] + [f"##{d}" for d in range(10)]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "timechat" / "assets")
    args = parser.parse_args()
    build_sentencepiece(args.out / "tiny_tokenizer")
    build_bert_vocab(args.out / "tiny_bert")
    print(f"wrote {args.out / 'tiny_tokenizer'} and {args.out / 'tiny_bert'}")


if __name__ == "__main__":
    main()
