"""Tokenizer rules, prompt rendering and label masking on the real LLaMA-2 tokenizer."""

from __future__ import annotations

import pytest

from timechat.data.conversation import ChatState, build_train_text, postprocess_answer, segment_ids
from timechat.data.tokenization import LlamaTokenizer, TokenizerLoadError, load_bert_tokenizer, tokenize_timestamps


@pytest.fixture(scope="module")
def tok(tokenizers_dir):
    return LlamaTokenizer.from_pretrained(tokenizers_dir / "llama-2")


def test_tokenizer_rules(tok):
    assert tok.encode("") == [1]
    assert tok.image_token_id == 32000 and len(tok) == 32001
    # no prefix after a special token; ImageHere swallows surrounding spaces
    assert tok.encode("<s>[INST]")[:3] == [1, 1, tok.sp.encode("[")[0]]  # "[" without "▁"
    assert tok.encode("a <ImageHere> b") == tok.encode("a<ImageHere>b")
    assert tok.encode("x </s>", add_special_tokens=False)[-2:] == [29871, 2]
    assert tok.encode("12.5", add_special_tokens=False) == [29871, 29896, 29906, 29889, 29945]
    assert tok.encode("a b c d", max_length=3, truncation=True) == tok.encode("a b c d")[:3]


def test_missing_tokenizer_dir(tmp_path):
    with pytest.raises(TokenizerLoadError, match="tokenizer.model"):
        LlamaTokenizer.from_pretrained(tmp_path)


def test_labels_supervise_answer_and_eos(tok):
    qa = [{"q": "What happens?", "a": "A man runs."}, {"q": "Then?", "a": "He stops."}]
    msg = "The video contains 2 frames sampled at 0.0, 1.0 seconds. "
    t = build_train_text(qa, msg, 2, tok)
    assert t.n_video_tokens == 32 and t.n_video_tokens_kept == 32 and not t.placeholders_cut
    spans, cur = [], None
    for p, lab in enumerate(t.labels):
        if lab != -100 and cur is None:
            cur = p
        if lab == -100 and cur is not None:
            spans.append((cur, p))
            cur = None
    if cur is not None:
        spans.append((cur, len(t.labels)))
    assert [tok.decode(t.input_ids[a:b]) for a, b in spans] == ["A man runs. </s>", "He stops. </s>"]
    assert all(t.input_ids[b - 2 : b] == [29871, 2] for _, b in spans)


def test_truncated_placeholders_flagged(tok):
    t = build_train_text([{"q": "q", "a": "a"}], "m ", 96, tok, max_txt_len=64)
    assert len(t.input_ids) == 64 and t.placeholders_cut and 0 < t.n_video_tokens_kept < 96
    assert all(lab == -100 for lab in t.labels)


def test_inference_prompt_and_answer(tok):
    st = ChatState()
    st.upload_video("The video contains 1 frames sampled at 0.0 seconds. ")
    st.ask("Describe.")
    p = st.prompt_for_answer()
    assert p.endswith("seconds.  Describe. [/INST]")
    segs = segment_ids(p, tok)
    assert segs[0][0] == 1 and segs[1][0] != 1 and tok.sp.id_to_piece(segs[1][0]) == "\u2581</"
    st.set_answer("ok")
    st.ask("Again?")
    assert st.prompt_for_answer().endswith("[/INST] ok </s><s>[INST] Again? [/INST]")
    ids = [1] + tok.encode("Sure thing.", add_special_tokens=False) + [2, 0, 0]
    assert postprocess_answer(ids, tok) == "Sure thing."
    assert postprocess_answer([1, 2, 0], tok) == ""


def test_timestamp_tokenizers(tok, tokenizers_dir):
    s = ["This frame is sampled at 0.0 second.", "This frame is sampled at 346.5 second."]
    lt = tokenize_timestamps(s, tok)
    assert lt["input_ids"][:, 0].tolist() == [1, 1] and lt["input_ids"].shape[1] == 15
    assert lt["attention_mask"][0].tolist().count(0) == 2
    bert = load_bert_tokenizer(tokenizers_dir / "bert-base-uncased")
    bt = tokenize_timestamps(s, bert)
    assert len(bert) == 30523 and bt["input_ids"][0, 0] == 101 and bt["input_ids"].shape[1] == 13
