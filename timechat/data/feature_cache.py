"""Cache of the frozen visual features: `ln_vision(ViT(frames))` per video, computed once.

In every TimeChat config the EVA ViT-g and `ln_vision` are frozen (`freeze_vit`), and in the
original they run on every training step: about two thirds of the model FLOPs of a step
(scripts/benchmark.py). With uniform frame sampling and the eval transform (no random crop) their
output for a video never changes, so it can be computed once and read back:

    build_feature_cache(model, videos, out_dir)    # decode + transform + ViT + ln_vision, once
    FeatureCache(out_dir).get(video)               # (T, N_img, D_v) features + clip metadata
    CachedFeatureDataset(dataset, cache)           # items carry `image_features`, not `images`
    collate_cached(items)                          # `image_features` (B*T, N_img, D_v)
    model(batch)                                   # TimeChat.forward starts after ln_vision

Exactness. The cached item is the live item (`build_train_item`) with the ViT already applied:
same frame indices, timestamps, `msg`, prompt, labels and timestamp tokens (all taken from the
cache metadata, which stores what `load_video` returned). It is only exact for
`sampling='uniform'` and `train_aug=False`: random frame sampling and the random resized crop draw
new frames/boxes every epoch, so `CachedFeatureDataset` refuses them. Stored in the dtype the ViT
computes in (`dtype='auto'`: bf16 for a bf16 ViT, fp32 for fp32) the features are bit-identical to
the live path when built with the same precision/autocast as training and the same frame batching;
other frame batch sizes may differ in the last bit where the GPU library picks another kernel,
which already happens between live batch sizes. `fp16` storage of fp32 features rounds to 11
significant bits (relative error <= 2**-11); `bf16` to 8 bits.

Layout of `out_dir` (one file pair per video, so a build is resumable and shards can run in parallel):

    cache.json                     settings: n_frms (= num_frames; the file format's spelling), image_size,
                                   sampling, transform, dtype, feature shape, ViT fingerprint (guards
                                   against mixing models)
    features/<stem>.npy            (T, N_img, D_v) array; bf16 stored as its raw uint16 bits
    features/<stem>.json           metadata: video key, file, indices, fps, vlen, timestamps, msg,
                                   n_frames, dtype, shape, backend; written last = entry complete
    failed/<stem>.json             videos that could not be decoded (reason), retried on rebuild
    index.json                     all complete entries (written at the end of a build)

`<stem>` is a hash of the video key: the path string as the records give it (relative to the
dataset's `videos_root`), so a cache is portable between machines.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from timechat.constants import DTYPE_NAMES, DTYPES, dtype_name
from timechat.io import atomic_path, atomic_write_json, read_json
from timechat.data.collate import collate_train
from timechat.data.conversation import build_train_text
from timechat.data.datasets import (SampleError, VideoInstructDataset, check_built_sample, frame_text_ids,
                                     validate_record)
from timechat.data.settings import EVAL_SAMPLING, DataSettings, FrameBudget
from timechat.data.tokenization import tokenize_timestamps
from timechat.data.transforms import eval_transform
from timechat.data.video import VideoClip, VideoDecodeError, load_video, timestamp_sentences
from timechat.stats import IssueStats

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SETTINGS_FILE = "cache.json"
INDEX_FILE = "index.json"
_NUMPY = {"fp32": np.float32, "fp16": np.float16, "bf16": np.uint16}  # bf16: raw bits


class FeatureCacheError(RuntimeError):
    """The cache does not match the request (other settings, other ViT) or is missing an entry."""


# --------------------------------------------------------------------------- keys and files
def video_key(video: str | os.PathLike) -> str:
    """The cache key of a video: its path as given, normalised (posix separators, no `./`)."""
    return Path(os.path.normpath(str(video))).as_posix()


def _stem(key: str) -> str:
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(key).stem)[:48]
    return f"{digest}_{name}"


def _to_numpy(feats: torch.Tensor, dtype: str) -> np.ndarray:
    """(n, N_img, D_v) tensor -> numpy in the storage dtype (bf16 as its uint16 bit pattern)."""
    x = feats.detach().to(DTYPES[dtype]).cpu()
    if dtype == "bf16":
        return x.view(torch.int16).numpy().view(np.uint16)
    return x.numpy()


def _from_numpy(arr: np.ndarray, dtype: str) -> torch.Tensor:
    """Inverse of `_to_numpy`; copies out of a memory map into an ordinary tensor."""
    arr = np.ascontiguousarray(arr)
    if dtype == "bf16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


# --------------------------------------------------------------------------- metadata
@dataclass
class CachedClip:
    """What `load_video` returned for a cached video, minus the pixels.

    Attributes mirror `VideoClip` (indices, fps, vlen, timestamps, msg, backend) plus where the
    features are (`file`, relative to the cache directory), their `shape` (T, N_img, D_v) and `dtype`.
    """

    video: str
    file: str
    n_frames: int
    indices: list[int]
    fps: float
    vlen: int
    timestamps: list[str]
    msg: str
    dtype: str
    shape: list[int]
    backend: str = "decord"

    @property
    def sentences(self) -> list[str]:
        """Per-frame Q-Former sentences, as `VideoClip.sentences`."""
        return timestamp_sentences(self.timestamps)

    def to_video_clip(self) -> VideoClip:
        """A `VideoClip` with the same metadata and no pixels (frames of shape (0, 0, 0, 3))."""
        return VideoClip(torch.empty((0, 0, 0, 3), dtype=torch.uint8), list(self.indices), self.fps, self.vlen,
                         list(self.timestamps), self.msg, self.backend, extra={"cached": True, "file": self.file})


def vit_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """Cheap identity of the frozen visual tower: dtype and per-tensor (numel, sum, sum |x|).

    Compared with a relative tolerance by `_same_fingerprint`, so it survives CPU/GPU summation order.
    """
    stats = []
    with torch.no_grad():
        for prefix, module in (("visual_encoder", model.visual_encoder), ("ln_vision", model.ln_vision)):
            for name, p in module.named_parameters():
                x = p.detach().double()
                stats.append([f"{prefix}.{name}", p.numel(), float(x.sum()), float(x.abs().sum())])
    dtype = str(model.visual_encoder.model.embeddings.patch_embedding.weight.dtype).replace("torch.", "")
    return {"vit_dtype": dtype, "params": stats}


def _same_fingerprint(a: dict[str, Any], b: dict[str, Any], rtol: float = 1e-4) -> str | None:
    """None if equal, else a sentence saying what differs."""
    if a.get("vit_dtype") != b.get("vit_dtype"):
        return f"ViT dtype {a.get('vit_dtype')} vs {b.get('vit_dtype')}"
    pa, pb = a.get("params", []), b.get("params", [])
    if [(p[0], p[1]) for p in pa] != [(p[0], p[1]) for p in pb]:
        return "different ViT parameter names/shapes"
    for x, y in zip(pa, pb):
        for u, v in ((x[2], y[2]), (x[3], y[3])):
            if abs(u - v) > rtol * max(abs(u), abs(v)) + 1e-6 * x[1]:
                return f"different weights in {x[0]}"
    return None


# --------------------------------------------------------------------------- reading
class FeatureCache:
    """Read access to a cache directory written by `build_feature_cache`.

    Args:
        out_dir: the cache directory.
    Raises:
        FileNotFoundError: no `cache.json` in `out_dir`.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        path = self.root / SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no feature cache at {self.root} ({SETTINGS_FILE} missing); build it with scripts/build_feature_cache.py"
            )
        self.settings: dict[str, Any] = read_json(path)
        if self.settings.get("format_version") != FORMAT_VERSION:
            raise FeatureCacheError(f"{path}: format_version {self.settings.get('format_version')}, expected {FORMAT_VERSION}")

    @property
    def num_frames(self) -> int:
        return int(self.settings["n_frms"])

    @property
    def frame_budget(self) -> FrameBudget:
        """The frame budget the cache was built with (caches from before `fps` budgets: a fixed count)."""
        rate = self.settings.get("frame_budget")
        if not rate:
            return FrameBudget(self.num_frames)
        return FrameBudget(self.num_frames, float(rate["fps"]), int(rate["min_frames"]),
                           None if rate["max_frames"] is None else int(rate["max_frames"]))

    @property
    def image_size(self) -> int:
        return int(self.settings["image_size"])

    def _meta_path(self, video: str | os.PathLike) -> Path:
        return self.root / "features" / f"{_stem(video_key(video))}.json"

    def has(self, video: str | os.PathLike) -> bool:
        """True when the video's entry is complete (its metadata file exists)."""
        return self._meta_path(video).is_file()

    def failure(self, video: str | os.PathLike) -> dict[str, Any] | None:
        """The recorded decode failure of a video (`{'video', 'reason', 'detail'}`), or None."""
        path = self.root / "failed" / f"{_stem(video_key(video))}.json"
        return read_json(path) if path.is_file() else None

    def metadata(self, video: str | os.PathLike) -> CachedClip:
        """The clip metadata of a cached video.

        Raises:
            KeyError: the video is not in the cache (naming the video and the cache).
        """
        path = self._meta_path(video)
        if not path.is_file():
            raise KeyError(f"video {video_key(video)!r} is not in the feature cache {self.root}; "
                           "(re)run scripts/build_feature_cache.py over the dataset's videos")
        return CachedClip(**read_json(path))

    def get(self, video: str | os.PathLike, mmap: bool = True) -> tuple[torch.Tensor, CachedClip]:
        """Features (T, N_img, D_v) in the stored dtype and the clip metadata.

        Args:
            video: the video key (the records' `video` path).
            mmap: read through a memory map (only this video's bytes are read).
        """
        meta = self.metadata(video)
        arr = np.load(self.root / meta.file, mmap_mode="r" if mmap else None)
        if list(arr.shape) != list(meta.shape):
            raise FeatureCacheError(f"{self.root / meta.file}: shape {list(arr.shape)}, metadata says {meta.shape}")
        return _from_numpy(arr, meta.dtype), meta

    def keys(self) -> list[str]:
        """Video keys of all complete entries."""
        keys = []
        for path in sorted((self.root / "features").glob("*.json")):
            keys.append(read_json(path)["video"])
        return keys

    def __len__(self) -> int:
        return len(list((self.root / "features").glob("*.json")))


# --------------------------------------------------------------------------- building
@dataclass
class CacheBuildReport:
    """What `build_feature_cache` did: keys written now, already cached, failed (key -> reason)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class _DecodeDataset(torch.utils.data.Dataset):
    """Decode + eval transform of one video per item (runs in DataLoader workers)."""

    def __init__(self, keys: Sequence[str], videos_root: Path | None, num_frames: int | FrameBudget, image_size: int,
                 backend: str) -> None:
        self.keys, self.root, self.num_frames, self.size, self.backend = list(keys), videos_root, num_frames, image_size, backend

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict[str, Any]:
        key = self.keys[i]
        path = self.root / key if self.root is not None else Path(key)
        try:
            clip = load_video(path, self.num_frames, self.size, self.size, EVAL_SAMPLING, backend=self.backend)
        except VideoDecodeError as exc:
            return {"key": key, "error": exc.reason, "detail": str(exc)}
        pixels = eval_transform(clip.frames).permute(1, 0, 2, 3).contiguous()  # (T, 3, H, W), as encode_video
        clip.frames = torch.empty(0, dtype=torch.uint8)
        return {"key": key, "pixels": pixels, "clip": clip}


def _rate_settings(budget: FrameBudget) -> dict[str, Any] | None:
    """`cache.json`'s ``frame_budget``: None for a fixed count (``n_frms`` holds it), else the rate and bounds."""
    if budget.fps is None:
        return None
    return {"fps": float(budget.fps), "min_frames": int(budget.min_frames),
            "max_frames": None if budget.max_frames is None else int(budget.max_frames)}


def same_frame_budget(a: FrameBudget, b: FrameBudget) -> bool:
    """Whether two budgets sample the same frames (a fixed count ignores the rate bounds; a rate ignores
    ``num_frames``)."""
    if (a.fps is None) != (b.fps is None):
        return False
    if a.fps is None:
        return a.num_frames == b.num_frames
    return _rate_settings(a) == _rate_settings(b)


def _first(items: list[Any]) -> Any:
    return items[0]


def _check_settings(root: Path, settings: dict[str, Any]) -> None:
    """Create `cache.json` or check that the existing one has the same settings and ViT."""
    path = root / SETTINGS_FILE
    if not path.is_file():
        atomic_write_json(path, settings)
        return
    old = read_json(path)
    for key in ("format_version", "n_frms", "frame_budget", "image_size", "sampling", "transform", "dtype", "autocast"):
        if old.get(key) != settings[key]:
            raise FeatureCacheError(
                f"{path} was built with {key}={old.get(key)!r}, this build asks for {settings[key]!r}; "
                "use another output directory"
            )
    why = _same_fingerprint(old.get("vit_fingerprint", {}), settings["vit_fingerprint"])
    if why:
        raise FeatureCacheError(f"{path} was built with another visual encoder ({why}); use another output directory")


@torch.no_grad()
def build_feature_cache(
    model: torch.nn.Module,
    video_paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    num_frames: int | FrameBudget = DataSettings.num_frames,
    image_size: int = DataSettings.image_size,
    dtype: str = "auto",
    batch_frames: int = 256,
    *,
    videos_root: str | os.PathLike | None = None,
    autocast: str | None = None,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    backend: str = "auto",
    progress: Callable[[int, int, str], None] | None = None,
) -> CacheBuildReport:
    """Compute and store `ln_vision(ViT(frames))` for each video (resumable, atomic per video).

    Frames are sampled uniformly and transformed with `eval_transform` (no crop), exactly as a
    `VideoInstructDataset(sampling='uniform', train_aug=False)` item.

    Args:
        model: a `TimeChat` with a frozen ViT (`cfg.freeze_vit`); left in eval mode.
        video_paths: video keys, relative to `videos_root` when given (the records' `video` field).
        out_dir: cache directory (created; an existing cache must have the same settings and ViT).
        num_frames / image_size: the dataset's frame count (or its `FrameBudget`, e.g. 1 fps within
            bounds: then each video has its own frame count) and decode size.
        dtype: storage dtype `'auto'` (what the ViT computes: exact), `'fp32'`, `'fp16'` or `'bf16'`.
        batch_frames: frames per ViT call (memory bound on the GPU).
        autocast: `'bf16'`/`'fp16'` to run the ViT under the autocast the training run uses.
        num_workers: DataLoader workers for decoding.
        device: where the model is (default: its parameters' device).
        progress: called as `progress(done, total, key)` after each video.
    Returns:
        `CacheBuildReport`. Videos already cached are skipped; failed decodes are recorded under
        `failed/` (and retried on the next build).
    Raises:
        ValueError: the ViT is trainable, or a bad dtype. FeatureCacheError: settings/ViT mismatch.
    """
    if not getattr(model.cfg, "freeze_vit", False):
        raise ValueError("build_feature_cache: the model's ViT is trainable (freeze_vit=False); cached features "
                         "would go stale as it trains. Only a frozen ViT can be cached.")
    if dtype != "auto" and dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be 'auto' or one of {DTYPE_NAMES}, got {dtype!r}")
    if autocast not in (None, "bf16", "fp16"):
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    vit_dtype = model.visual_encoder.model.embeddings.patch_embedding.weight.dtype
    if dtype == "auto":
        compute = DTYPES[autocast] if autocast else vit_dtype
        dtype = dtype_name(compute)
    root = Path(out_dir)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "failed").mkdir(exist_ok=True)
    cfg = model.cfg.vision
    budget = num_frames if isinstance(num_frames, FrameBudget) else FrameBudget(int(num_frames))
    settings = {
        "format_version": FORMAT_VERSION, "n_frms": int(budget.num_frames), "frame_budget": _rate_settings(budget),
        "image_size": int(image_size),
        "sampling": EVAL_SAMPLING,
        "transform": "eval", "dtype": dtype, "autocast": autocast,
        "feature_shape": [cfg.num_tokens, cfg.width], "vit_fingerprint": vit_fingerprint(model),
    }
    _check_settings(root, settings)
    cache = FeatureCache(root)
    keys = list(dict.fromkeys(video_key(p) for p in video_paths))  # unique, in order
    report = CacheBuildReport(skipped=[k for k in keys if cache.has(k)])
    pending = [k for k in keys if not cache.has(k)]
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(pending, Path(videos_root) if videos_root is not None else None, budget, image_size, backend),
        batch_size=1, collate_fn=_first, num_workers=num_workers,
    )
    was_training = model.training
    model.eval()
    amp = (torch.autocast(device_type=device.type, dtype=DTYPES[autocast]) if autocast
           else torch.autocast(device_type=device.type, enabled=False))
    try:
        for done, item in enumerate(loader, 1):
            key, stem = item["key"], _stem(item["key"])
            if "error" in item:
                atomic_write_json(root / "failed" / f"{stem}.json",
                                   {"video": key, "reason": item["error"], "detail": item["detail"]})
                report.failed[key] = item["error"]
                logger.warning("feature cache: cannot decode %s (%s)", key, item["detail"])
            else:
                _write_entry(model, root, stem, item, dtype, batch_frames, device, amp)
                (root / "failed" / f"{stem}.json").unlink(missing_ok=True)
                report.written.append(key)
            if progress is not None:
                progress(done, len(pending), key)
    finally:
        model.train(was_training)
    write_index(root)
    return report


def _write_entry(model: torch.nn.Module, root: Path, stem: str, item: dict[str, Any], dtype: str,
                 batch_frames: int, device: torch.device, amp: Any) -> None:
    """Features of one video into a temporary .npy, then the .npy and its metadata, each atomically."""
    pixels, clip = item["pixels"], item["clip"]  # (T, 3, H, W)
    t = pixels.shape[0]
    npy = root / "features" / f"{stem}.npy"
    with atomic_path(npy, fsync=False) as tmp:
        out = None
        for s in range(0, t, batch_frames):
            with amp:
                feats = model.encode_frames(pixels[s:s + batch_frames].to(device, non_blocking=True))  # (n, N_img, D_v)
            if dtype == "fp16" and not torch.isfinite(feats.half()).all():
                raise FeatureCacheError(f"{item['key']}: features overflow fp16; use dtype='bf16' or 'fp32'")
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=_NUMPY[dtype], shape=(t, *feats.shape[1:]))
            out[s:s + feats.shape[0]] = _to_numpy(feats, dtype)
        out.flush()
        shape = list(out.shape)
        del out
    meta = CachedClip(video=item["key"], file=f"features/{npy.name}", n_frames=t, indices=list(clip.indices),
                      fps=float(clip.fps), vlen=int(clip.vlen), timestamps=list(clip.timestamps), msg=clip.msg,
                      dtype=dtype, shape=shape, backend=clip.backend)
    atomic_write_json(root / "features" / f"{stem}.json", asdict(meta))  # last: marks the entry complete


def write_index(out_dir: str | os.PathLike) -> Path:
    """(Re)write `index.json`: settings plus every complete entry's metadata and the failures."""
    root = Path(out_dir)
    entries = [read_json(p) for p in sorted((root / "features").glob("*.json"))]
    failed = [read_json(p) for p in sorted((root / "failed").glob("*.json"))]
    settings = read_json(root / SETTINGS_FILE)
    settings.pop("vit_fingerprint", None)
    path = root / INDEX_FILE
    atomic_write_json(path, {"settings": settings, "videos": entries, "failed": failed})
    return path


# --------------------------------------------------------------------------- dataset + collate
def require_exact_caching(settings: DataSettings, where: str) -> None:
    """Raise `ValueError` naming `where` unless the dataset `settings` sample uniformly without crop."""
    problems = []
    if settings.sampling != EVAL_SAMPLING:
        problems.append(f"sampling={settings.sampling!r} draws different frames every epoch")
    if settings.train_aug:
        problems.append("train_aug=True draws a new random resized crop every epoch")
    if problems:
        raise ValueError(
            f"{where}: cached ViT features are only exact for sampling='uniform' without crop (train_aug=False): "
            + "; ".join(problems) + ". Set sampling: uniform and train_aug: false for this dataset, or train "
            "from videos without the cache."
        )


def _budget_text(b: FrameBudget) -> str:
    if b.fps is None:
        return f"num_frames={b.num_frames}"
    return f"fps={b.fps} (min_frames={b.min_frames}, max_frames={b.max_frames})"


class CachedFeatureDataset(VideoInstructDataset):
    """`VideoInstructDataset` whose items carry cached `image_features` (T, N_img, D_v) instead of `images`.

    Shares the base dataset's records, tokenizers, settings, seeds and bad-sample handling; every
    other field of an item (ids, labels, timestamps, clip metadata) is what the live item would be,
    built from the cache's metadata.

    Args:
        base: the live dataset; must use `sampling='uniform'` and `train_aug=False`.
        cache: a `FeatureCache` built with the base's frame budget and `image_size`.
    Raises:
        ValueError: the base samples randomly or crops (caching would not be exact), or the cache
            was built with other frame settings.
    """

    def __init__(self, base: VideoInstructDataset, cache: FeatureCache) -> None:
        require_exact_caching(base.settings, base.name)
        if not same_frame_budget(cache.frame_budget, base.settings.frame_budget):
            raise ValueError(f"feature cache {cache.root} was built with {_budget_text(cache.frame_budget)}, the "
                             f"dataset asks for {_budget_text(base.settings.frame_budget)}")
        if cache.image_size != base.settings.image_size:
            raise ValueError(f"feature cache {cache.root} was built with image_size={cache.image_size}, the dataset "
                             f"asks for {base.settings.image_size}")
        self.__dict__.update(base.__dict__)  # the base's records, tokenizers, settings and seeds
        self.stats = IssueStats()
        self.cache = cache

    def build(self, index: int) -> dict[str, Any]:
        """Item `index` from the cache (raises `SampleError` for videos that failed to decode)."""
        sid = self.sample_id(index)
        rec = validate_record(self.records[index], sid)
        fail = self.cache.failure(rec["video"])
        if fail is not None and not self.cache.has(rec["video"]):
            reason = {"missing": "video_missing", "empty": "video_empty"}.get(fail["reason"], "video_undecodable")
            raise SampleError(sid, reason, fail.get("detail", ""))
        feats, meta = self.cache.get(rec["video"])  # (T, N_img, D_v)
        st = self.settings
        text = build_train_text(rec["QA"], meta.msg, meta.n_frames, self.llama_tokenizer, st.num_video_query_token,
                                st.stride, st.max_txt_len)
        check_built_sample(sid, text, meta.n_frames, st)
        clip = meta.to_video_clip()
        item = {
            "id": sid,
            "image_features": feats,
            "input_ids": torch.tensor(text.input_ids, dtype=torch.long),
            "labels": torch.tensor(text.labels, dtype=torch.long),
            "timestamps": tokenize_timestamps(meta.sentences, self.timestamp_tokenizer),
            "clip": clip,
            "text": text,
        }
        words = frame_text_ids(rec, clip.indices, clip.fps, self.llama_tokenizer)
        return item if words is None else {**item, "frame_words": words}


def collate_cached(samples: Sequence[dict[str, Any]], pad_token_id: int = 0) -> dict[str, Any]:
    """`collate_train` for cached items: `image_features` (B*T, N_img, D_v), or a list of (T_i, N_img, D_v)
    when the frame counts differ (then `timestamps` is a per-sample list too). Text fields are
    exactly `collate_train`'s."""
    batch = collate_train([{**s, "images": s["image_features"]} for s in samples], pad_token_id)
    feats = batch.pop("images")
    if batch["collate_path"] == "stacked":
        b, t = feats.shape[:2]  # (B, T, N_img, D_v)
        batch["image_features"] = feats.reshape(b * t, *feats.shape[2:])  # (B*T, N_img, D_v), frame-major per video
    else:
        batch["image_features"] = list(feats)
    return batch
