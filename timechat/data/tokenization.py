"""Tokenizers of the data pipeline: the LLaMA-2 prompt tokenizer and the BERT timestamp tokenizer.


Mirrors what the original gets from ``transformers==4.34`` when it calls
``LlamaTokenizer.from_pretrained(path, use_fast=False)`` (``legacy: false``) followed by
``add_tokens(['<ImageHere>'], special_tokens=True)`` and ``pad_token = unk_token``
(``TimeChat.__init__`` / ``Video_Instruct_Dataset.__init__``), and
``BertTokenizer.from_pretrained('bert-base-uncased')`` plus ``add_special_tokens({'bos_token': '[DEC]'})``
(``Blip2Base.init_tokenizer``).

The LLaMA side is written on plain ``sentencepiece`` because the transformers-5 tokenizers can
differ from the slow 4.34 tokenizer on text that starts with whitespace. The rules of the slow
tokenizer reproduced here (checked by scripts/check_reference_parity.py against its outputs):

1. a literal ``▁`` (U+2581) in the text is replaced by a space;
2. the text is split at ``<s>``, ``</s>``, ``<unk>`` and the added ``<ImageHere>``; ``<ImageHere>``
   swallows the whitespace on both of its sides, the other three leave it alone;
3. each piece is encoded by SentencePiece with the dummy prefix switched off; the first piece of a
   call gets one extra leading space unless the call begins with a special string;
4. BOS is prepended when special tokens are requested; EOS never is.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from timechat.constants import IMAGE_PLACEHOLDER
from timechat.io import read_json

logger = logging.getLogger(__name__)

SPIECE_UNDERLINE = "\u2581"
DEFAULT_TIMESTAMP_MAX_LENGTH = 32


class TokenizerLoadError(RuntimeError):
    """A tokenizer directory is missing a file or holds an unusable configuration."""


class LlamaTokenizer:
    """Slow-``LlamaTokenizer`` (transformers 4.34, ``legacy: false``) equivalent on sentencepiece.

    Attributes:
        vocab_size: SentencePiece vocabulary size (32000 for LLaMA-2).
        image_token_id: id of the added ``<ImageHere>`` token (= ``vocab_size``).
        bos_token_id / eos_token_id / unk_token_id / pad_token_id: 1 / 2 / 0 / 0 (pad is unk, as the
            original sets ``pad_token = unk_token``).
    """

    bos_token = "<s>"
    eos_token = "</s>"
    unk_token = "<unk>"

    def __init__(
        self,
        model_file: str | Path,
        *,
        legacy: bool = False,
        add_bos_token: bool = True,
        image_token: str = IMAGE_PLACEHOLDER,
    ) -> None:
        """Load a SentencePiece model.

        Args:
            model_file: path of ``tokenizer.model``.
            legacy: ``True`` reproduces the ``legacy: true`` behaviour (dummy prefix on every piece,
                so text right after a special token starts with ``▁``). The TimeChat goldens use
                ``False``.
            add_bos_token: prepend BOS when ``add_special_tokens`` is true (tokenizer_config).
            image_token: the added placeholder token string.
        """
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        model_file = Path(model_file)
        if not model_file.is_file():
            raise TokenizerLoadError(f"SentencePiece model not found: {model_file}")
        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(model_file.read_bytes())
        except Exception as exc:  # protobuf raises its own DecodeError type
            raise TokenizerLoadError(f"cannot parse SentencePiece model {model_file}: {exc}") from exc
        self.legacy = legacy
        self.add_bos_token = add_bos_token
        self.model_file = model_file
        # legacy=False: the prefix space is added by hand (rule 3), so the model must not add one
        # to every piece it sees; legacy=True keeps the model's own dummy prefix on every piece.
        if not legacy:
            proto.normalizer_spec.add_dummy_prefix = False
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(proto.SerializeToString())
        self.vocab_size = int(self.sp.get_piece_size())
        self.unk_token_id = int(self.sp.unk_id())
        self.bos_token_id = int(self.sp.bos_id())
        self.eos_token_id = int(self.sp.eos_id())
        self.pad_token_id = self.unk_token_id
        self.image_token = image_token
        self.image_token_id = self.vocab_size
        self._special = {self.bos_token: self.bos_token_id, self.eos_token: self.eos_token_id, self.unk_token: self.unk_token_id}
        # Longest first so that e.g. "</s>" is not read as "<s>" preceded by "/".
        alternatives = sorted([*self._special, image_token], key=len, reverse=True)
        self._split_re = re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")")
        self.padding_side = "right"

    @classmethod
    def from_pretrained(cls, directory: str | Path, image_token: str = IMAGE_PLACEHOLDER) -> "LlamaTokenizer":
        """Load ``tokenizer.model`` + ``tokenizer_config.json`` from a HF-style folder.

        Raises:
            TokenizerLoadError: the folder or ``tokenizer.model`` is missing.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerLoadError(f"LLaMA tokenizer directory not found: {directory}")
        model_file = directory / "tokenizer.model"
        if not model_file.is_file():
            raise TokenizerLoadError(f"{directory} has no tokenizer.model (SentencePiece model expected)")
        config: dict[str, Any] = {}
        config_file = directory / "tokenizer_config.json"
        if config_file.is_file():
            config = read_json(config_file)
        else:
            warnings.warn(f"{directory} has no tokenizer_config.json; assuming legacy=false, add_bos_token=true", stacklevel=2)
        legacy = config.get("legacy")
        if legacy is None:
            # transformers 4.34 treats a missing value as legacy=True and warns; the released
            # Llama-2-chat config says false and all TimeChat goldens assume false.
            warnings.warn(f"{config_file}: 'legacy' is not set; using legacy=false as Llama-2-chat does", stacklevel=2)
            legacy = False
        elif legacy:
            warnings.warn(
                f"{config_file}: legacy=true — text after special tokens gets a '▁' prefix; "
                "token ids will differ from the TimeChat goldens (which use legacy=false)",
                stacklevel=2,
            )
        if config.get("add_eos_token"):
            raise TokenizerLoadError(f"{config_file}: add_eos_token=true is not supported (TimeChat never adds EOS)")
        return cls(model_file, legacy=bool(legacy), add_bos_token=bool(config.get("add_bos_token", True)), image_token=image_token)

    def __len__(self) -> int:
        """Vocabulary size including ``<ImageHere>`` (32001 for LLaMA-2)."""
        return self.vocab_size + 1

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> list[int]:
        """Token ids of one string (rules 1-4 of the module docstring).

        Args:
            text: the string.
            add_special_tokens: prepend BOS (if the config's ``add_bos_token``).
            max_length / truncation: cut the ids (BOS included) on the right to ``max_length``.
        """
        ids: list[int] = [self.bos_token_id] if (add_special_tokens and self.add_bos_token) else []
        text = text.replace(SPIECE_UNDERLINE, " ")
        parts = self._split_re.split(text)
        # parts alternates [text, special, text, special, ..., text]
        for i in range(1, len(parts), 2):
            if parts[i] == self.image_token:
                parts[i - 1] = parts[i - 1].rstrip()
                parts[i + 1] = parts[i + 1].lstrip()
        for i, part in enumerate(parts):
            if i % 2 == 1:
                ids.append(self._special.get(part, self.image_token_id))
                continue
            if not part:
                continue
            if self.legacy:
                ids.extend(self.sp.encode(part))
            else:
                # Only the very first piece of the call gets the prefix space (i == 0 means the
                # call does not begin with a special string).
                ids.extend(self.sp.encode(" " + part if i == 0 else part))
        if truncation and max_length is not None and len(ids) > max_length:
            ids = ids[:max_length]
        return ids

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """HF-style call: ``{'input_ids', 'attention_mask'}``.

        Args:
            text: a string or a list of strings.
            padding: ``False`` or ``'longest'``/``True`` (right padding with ``pad_token_id``).
            return_tensors: ``None`` (lists) or ``'pt'`` (long tensors; needs padding for batches).
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        rows = [self.encode(t, add_special_tokens, max_length, truncation) for t in texts]
        masks = [[1] * len(r) for r in rows]
        if padding in (True, "longest") and rows:
            width = max(len(r) for r in rows)
            rows = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
            masks = [m + [0] * (width - len(m)) for m in masks]
        elif padding not in (False, None, "do_not_pad"):
            raise ValueError(f"padding={padding!r} is not supported (use False or 'longest')")
        if return_tensors == "pt":
            out = {"input_ids": torch.tensor(rows, dtype=torch.long), "attention_mask": torch.tensor(masks, dtype=torch.long)}
        elif return_tensors is None:
            out = {"input_ids": rows, "attention_mask": masks}
        else:
            raise ValueError(f"return_tensors={return_tensors!r} is not supported (use None or 'pt')")
        if single and return_tensors is None:
            out = {k: v[0] for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ decoding
    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """SentencePiece pieces of ``ids`` (``<ImageHere>`` for the added id)."""
        return [self.image_token if int(i) == self.image_token_id else self.sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Decode as the slow 4.34 tokenizer does (``Chat.answer`` calls it without skipping).

        The ids are cut into groups at the added ``<ImageHere>`` (groups joined with single spaces,
        ``spaces_between_special_tokens``). In a group, ``<s>``/``</s>``/``<unk>`` are written
        literally with no added spaces, the runs of ordinary ids between them are decoded by
        SentencePiece (dummy prefix off, so invalid byte-fallback sequences become U+FFFD), and the
        first token of the group loses its prefix ``▁`` (the slow tokenizer removes the space it
        added when encoding).
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        special_ids = {v: k for k, v in self._special.items()}
        groups: list[list[int]] = [[]]
        texts: list[str] = []
        for i in ids:
            if i == self.image_token_id:
                groups.append([self.image_token_id])
                groups.append([])
            elif not (skip_special_tokens and i in special_ids):
                groups[-1].append(i)
        for group in groups:
            if not group:
                continue
            if group == [self.image_token_id]:
                if not skip_special_tokens:
                    texts.append(self.image_token)
                continue
            text, run = "", []
            for pos, i in enumerate(group + [None]):
                if i is None or i in special_ids:
                    if run:
                        piece = self.sp.decode(run)
                        if pos == len(run) and self.sp.id_to_piece(run[0]).startswith(SPIECE_UNDERLINE):
                            # first token of the group: drop the decoded prefix space
                            piece = piece[1:] if piece.startswith(" ") else piece
                        text += piece
                        run = []
                    if i is not None:
                        text += special_ids[i]
                else:
                    run.append(i)
            if text:
                texts.append(text)
        return " ".join(texts)


def load_bert_tokenizer(directory: str | Path, bos_token: str = "[DEC]") -> Any:
    """bert-base-uncased WordPiece tokenizer with ``[DEC]`` added as BOS (``Blip2Base.init_tokenizer``).

    Args:
        directory: folder with ``vocab.txt`` (and optionally ``tokenizer_config.json``).
        bos_token: the added BOS token (id = vocabulary size).

    Returns:
        a transformers ``BertTokenizer`` with right padding.
    """
    directory = Path(directory)
    if not (directory / "vocab.txt").is_file():
        raise TokenizerLoadError(f"BERT tokenizer directory {directory} has no vocab.txt")
    from transformers import BertTokenizer

    # from_pretrained(dir), never BertTokenizer(vocab_file=...): the latter silently gives empty
    # encodings in transformers 5.
    tok = BertTokenizer.from_pretrained(str(directory))
    tok.add_special_tokens({"bos_token": bos_token})
    tok.padding_side = "right"  # the default may come out 'left' in transformers 5
    return tok


def tokenize_timestamps(
    sentences: Sequence[str], tokenizer: Any, max_length: int = DEFAULT_TIMESTAMP_MAX_LENGTH
) -> dict[str, torch.Tensor]:
    """Per-frame timestamp sentences → Q-Former text input.

    Mirrors ``tokenizer(sentences, return_tensors='pt', padding='longest', max_length=32,
    truncation=True)`` of ``Video_Instruct_Dataset.__getitem__`` (LLaMA tokenizer) and
    ``Chat.upload_video_without_audio`` (BERT tokenizer).

    Args:
        sentences: T strings ``This frame is sampled at {t} second.``.
        tokenizer: a `LlamaTokenizer` (BOS first, right pad 0) or a HF ``BertTokenizer``
            (``[CLS] … [SEP]``, pad 0).
        max_length: truncation length (32 in the original).

    Returns:
        ``{'input_ids': (T, L) long, 'attention_mask': (T, L) long}``, L = longest row.
    """
    if len(sentences) == 0:
        raise ValueError("tokenize_timestamps: empty sentence list")
    if isinstance(tokenizer, LlamaTokenizer):
        enc = tokenizer(list(sentences), padding="longest", max_length=max_length, truncation=True, return_tensors="pt")
    else:
        if getattr(tokenizer, "padding_side", "right") != "right":
            raise ValueError("timestamp tokenizer must pad on the right (set padding_side='right')")
        enc = tokenizer(list(sentences), padding="longest", max_length=max_length, truncation=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}
