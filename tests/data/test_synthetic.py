"""Tests for the synthetic dataset generator: pixels, answers and eval gt all agree with events.json."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from timechat.data.synthetic import (
    EVENT_TYPES,
    TASKS,
    TIMELINE_TEMPLATES,
    SyntheticConfig,
    _dvc_answer,
    generate_synthetic_dataset,
    load_events,
    main,
)

av = pytest.importorskip("av")

# Small but varied: ranged durations on a 0.5-s grid, up to 3 events, all 6 event types.
SMALL = dict(
    seed=3, num_train=4, num_val=2, num_test=3, duration=(6.0, 10.0), fps=8, size=32,
    max_events=3, time_grid=0.5, num_event_types=6, tasks=TASKS,
)
SPLITS = ("train", "val", "test")
TOL = 60  # max per-channel distance for a decoded pixel to count as an event colour


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate_synthetic_dataset(out, **SMALL)
    return out, summary


def _decode(path: Path) -> tuple[np.ndarray, list[float]]:
    with av.open(str(path)) as c:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in c.decode(video=0)]
    return np.stack([f for f, _ in frames]), [t for _, t in frames]


def _colour_counts(frames: np.ndarray) -> np.ndarray:
    """(T, num_types) number of pixels within TOL of each event type's colour."""
    rgb = np.array([c for _, c, _ in EVENT_TYPES], dtype=np.int16)  # (K, 3)
    diff = np.abs(frames[:, :, :, None, :].astype(np.int16) - rgb[None, None, None])  # (T, H, W, K, 3)
    return (diff.max(-1) <= TOL).sum((1, 2))  # (T, K)


def _read(path: Path):
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- pixels


def test_event_colour_visible_exactly_in_span(small):
    out, summary = small
    size = SMALL["size"]
    # Smallest full shape at its smallest scale: the thin bar, 0.5 * 0.75 * size wide, 0.5 as tall.
    min_area = (0.5 * 0.75 * size) * (0.5 * 0.5 * 0.75 * size)
    checked_boundaries = 0
    for split in SPLITS:
        for v in load_events(out, split):
            frames, times = _decode(out / v["video"])
            assert len(frames) == v["num_frames"] == round(v["duration"] * SMALL["fps"])
            assert frames.shape[1:] == (size, size, 3)
            np.testing.assert_allclose(times, np.arange(len(frames)) / SMALL["fps"], atol=1e-6)
            counts = _colour_counts(frames)
            expected = np.zeros_like(counts, dtype=bool)
            for ev in v["events"]:
                t = np.asarray(times)
                active = (t >= ev["start"] - 1e-9) & (t < ev["end"] - 1e-9)
                assert active.sum() == ev["end_frame"] - ev["start_frame"]
                assert np.flatnonzero(active)[0] == ev["start_frame"] == round(ev["start"] * SMALL["fps"])
                expected[active, ev["type"]] = True
                # The frames on both sides of each boundary, explicitly.
                for i, on in ((ev["start_frame"], True), (ev["start_frame"] - 1, False),
                              (ev["end_frame"] - 1, True), (ev["end_frame"], False)):
                    if 0 <= i < len(frames):
                        assert (counts[i, ev["type"]] >= 0.5 * min_area) == on, (v["id"], ev, i)
                        checked_boundaries += 1
            assert (counts[expected] >= 0.5 * min_area).all(), v["id"]
            assert (counts[~expected] == 0).all(), v["id"]
    assert checked_boundaries > 20


def test_background_is_grey_and_shapes_in_frame(small):
    out, _ = small
    v = load_events(out, "train")[0]
    frames, _ = _decode(out / v["video"])
    ev = v["events"][0]
    off = [i for i in range(len(frames)) if not any(e["start_frame"] <= i < e["end_frame"] for e in v["events"])]
    if off:
        f = frames[off[0]].astype(int)
        assert np.abs(f - f.mean(-1, keepdims=True)).max() <= 12  # no colour without an event
    # Shape stays inside the frame: the colour never touches the border rows/columns.
    on = frames[ev["start_frame"]:ev["end_frame"]]
    mask = np.abs(on.astype(int) - np.array(ev["rgb"])).max(-1) <= TOL
    assert not mask[:, 0].any() and not mask[:, -1].any() and not mask[:, :, 0].any() and not mask[:, :, -1].any()


def test_moving_shape_moves(tmp_path):
    generate_synthetic_dataset(tmp_path, seed=5, num_train=12, num_val=0, num_test=0, duration=8, size=32, max_events=1)
    moving = [v for v in load_events(tmp_path, "train") if v["events"][0]["motion"] == "left_to_right"]
    assert moving, "seed 5 should draw a left_to_right event"
    v = moving[0]
    ev = v["events"][0]
    frames, _ = _decode(tmp_path / v["video"])
    cols = []
    for i in (ev["start_frame"], ev["end_frame"] - 1):
        mask = np.abs(frames[i].astype(int) - np.array(ev["rgb"])).max(-1) <= TOL
        cols.append(np.nonzero(mask)[1].mean())
    assert cols[1] - cols[0] > 0.3 * 32


def test_decord_sees_same_frames_and_fps(small):
    decord = pytest.importorskip("decord")
    out, _ = small
    v = load_events(out, "test")[0]
    vr = decord.VideoReader(str(out / v["video"]))
    assert len(vr) == v["num_frames"]
    assert vr.get_avg_fps() == pytest.approx(SMALL["fps"])


# ---------------------------------------------------------------------------- events


def test_events_on_grid_non_overlapping_and_varied(small):
    out, summary = small
    grid = SMALL["time_grid"]
    durations = []
    for split in SPLITS:
        videos = load_events(out, split)
        assert len(videos) == summary.num_videos[split] == SMALL[f"num_{split}"]
        assert sum(len(v["events"]) for v in videos) == summary.num_events[split]
        for v in videos:
            durations.append(v["duration"])
            assert SMALL["duration"][0] <= v["duration"] <= SMALL["duration"][1]
            assert v["duration"] / grid == pytest.approx(round(v["duration"] / grid))
            evs = v["events"]
            assert 1 <= len(evs) <= SMALL["max_events"]
            assert len({e["type"] for e in evs}) == len(evs)  # distinct types
            for a, b in zip(evs, evs[1:]):
                assert a["end"] <= b["start"]  # in time order, no overlap
            for e in evs:
                assert 0 <= e["start"] < e["end"] <= v["duration"]
                assert e["end"] - e["start"] >= 2.0
                for t in (e["start"], e["end"]):
                    assert t / grid == pytest.approx(round(t / grid))
                colour, rgb, shape = EVENT_TYPES[e["type"]]
                assert (e["colour"], tuple(e["rgb"]), e["shape"]) == (colour, rgb, shape)
                assert e["sentence"].startswith(f"a {colour} {shape} ")
    assert len(set(durations)) > 1


# ---------------------------------------------------------------------------- answers and gt


def _items(out, task, split):
    return _read(out / "instruct" / f"{task}_{split}.json")


def test_tvg_answers_and_gt_match_events(small):
    out, summary = small
    for split in SPLITS:
        queries = [(v, e) for v in load_events(out, split) for e in v["events"]]
        items = _items(out, "tvg", split)
        gt = _read(summary.eval_gt["tvg"][split])["annotations"]
        assert len(items) == len(gt) == len(queries)
        assert [g["id"] for g in gt] == list(range(len(gt)))
        for (v, e), item, g in zip(queries, items, gt):
            assert item["video"] == v["video"] and (out / item["video"]).is_file()
            assert item["source"] == "synthetic_tvg"
            (qa,) = item["QA"]
            assert f"'{e['sentence']}'" in qa["q"]
            # the default `tvg_answer: named` restates the queried shape (see SyntheticConfig.tvg_answer)
            m = re.fullmatch(rf"The {e['colour']} {e['shape']} happens in (\d+\.\d) - (\d+\.\d) seconds\.", qa["a"])
            assert m, qa["a"]
            assert (float(m[1]), float(m[2])) == (e["start"], e["end"])
            assert g == {"image_id": v["file"], "caption": e["sentence"], "timestamp": [e["start"], e["end"]],
                         "id": g["id"]}
            assert (summary.videos_dir[split] / g["image_id"]).is_file()


def test_tvg_answer_timeit_wording(tmp_path):
    """`tvg_answer: timeit` writes TimeIT's Charades-STA wording (and the timeline as `shape: span`); the
    spans and questions are unchanged."""
    kw = dict(num_train=3, num_val=0, num_test=0, tasks=("tvg",))
    named = generate_synthetic_dataset(tmp_path / "named", SyntheticConfig(**kw))
    timeit = generate_synthetic_dataset(tmp_path / "timeit", SyntheticConfig(tvg_answer="timeit", **kw))
    a = _read(named.instruct["tvg"]["train"])
    b = _read(timeit.instruct["tvg"]["train"])
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["QA"][0]["q"] == y["QA"][0]["q"]
        span = re.fullmatch(r"The [a-z]+ [a-z]+ happens in (.*)", x["QA"][0]["a"])[1]
        assert y["QA"][0]["a"] == f"The given query happens in {span}"
    kw["tasks"] = ("timeline",)
    named_tl = _read(generate_synthetic_dataset(tmp_path / "named_tl", SyntheticConfig(**kw)).instruct["timeline"]["train"])
    timeit_tl = _read(generate_synthetic_dataset(tmp_path / "timeit_tl", SyntheticConfig(tvg_answer="timeit", **kw))
                      .instruct["timeline"]["train"])
    for x, y in zip(named_tl, timeit_tl):
        rows = re.findall(r"The (\w+ \w+) happens in (\S+ - \S+) seconds\.", x["QA"][0]["a"])
        assert rows and y["QA"][0]["a"] == " ".join(f"{shape}: {span} seconds." for shape, span in rows)
    with pytest.raises(ValueError, match="tvg_answer"):
        SyntheticConfig(tvg_answer="restated")


DVC_PIECE = r"(\d+\.\d) - (\d+\.\d) seconds, ([a-z ]+)\. "


def test_dvc_answer_hand_computed():
    events = [{"start": 2.0, "end": 4.5, "sentence": "a red square moves from left to right"},
              {"start": 6.0, "end": 10.0, "sentence": "a blue circle grows"}]
    assert _dvc_answer(events) == ("2.0 - 4.5 seconds, a red square moves from left to right.  "
                                   "6.0 - 10.0 seconds, a blue circle grows. ")


def test_dvc_answers_and_gt_match_events(small):
    out, summary = small
    for split in SPLITS:
        videos = load_events(out, split)
        items = _items(out, "dvc", split)
        gt_path = summary.eval_gt["dvc"][split]
        assert gt_path.name.split(".")[0] == split  # the DVC metric takes the split from here
        gt = _read(gt_path)["annotations"]
        assert len(items) == len(gt) == len(videos)
        for v, item, g in zip(videos, items, gt):
            a = item["QA"][0]["a"]
            # Read the answer back: one "S - E seconds, sentence." per event, in time order, and
            # nothing else (only the spaces between the pieces are left when they are removed).
            pieces = re.findall(DVC_PIECE, a)
            assert [(float(s), float(t), c) for s, t, c in pieces] == [(e["start"], e["end"], e["sentence"])
                                                                        for e in v["events"]]
            assert re.sub(DVC_PIECE, "", a).strip() == ""
            starts = [float(s) for s, _, _ in pieces]
            assert starts == sorted(starts)
            for e in v["events"]:  # the sentence names what is seen: the event's colour and shape
                assert e["sentence"].startswith(f"a {e['colour']} {e['shape']} ")
            assert g["image_id"] == v["file"] and g["duration"] == v["duration"]
            assert g["segments"] == [[e["start"], e["end"]] for e in v["events"]]
            sentences = g["pure_cap"].split(". ")
            assert sentences == [e["sentence"] for e in v["events"]]
            assert len(sentences) == len(g["segments"])
            # ActivityNet-style reading of `caption` gives the same sentences.
            assert [p.strip() for p in g["caption"].split(".") if len(p) > 5] == sentences


def test_timeline_answers_list_shapes_by_type_not_by_time(small):
    out, summary = small
    assert "timeline" not in summary.eval_gt  # training-only task
    reordered = 0
    for split in SPLITS:
        videos = load_events(out, split)
        items = _items(out, "timeline", split)
        assert len(items) == len(videos)
        for v, item in zip(videos, items):
            assert item["video"] == v["video"] and item["source"] == "synthetic_timeline"
            assert item["QA"][0]["q"] in TIMELINE_TEMPLATES
            # `tvg_answer: named` (the default): each line is that shape's grounding answer
            answer = item["QA"][0]["a"]
            rows = re.findall(r"The (\w+) (\w+) happens in (\d+\.\d) - (\d+\.\d) seconds\.", answer)
            by_type = sorted(v["events"], key=lambda e: e["type"])
            assert rows == [(e["colour"], e["shape"], f"{e['start']:.1f}", f"{e['end']:.1f}") for e in by_type]
            assert answer == " ".join(f"The {c} {s} happens in {a} - {b} seconds." for c, s, a, b in rows)
            reordered += by_type != v["events"]
    assert reordered > 0  # the listing order is not the time order for some videos


def test_vhd_answers_and_gt_match_events(small):
    out, summary = small
    for split in SPLITS:
        queries = [(v, e) for v in load_events(out, split) for e in v["events"]]
        items = _items(out, "vhd", split)
        rows = [json.loads(line) for line in summary.eval_gt["vhd"][split].read_text().splitlines()]
        coco = _read(summary.eval_queries["vhd"][split])["annotations"]
        assert len(items) == len(rows) == len(coco) == len(queries)
        for (v, e), item, row, c in zip(queries, items, rows, coco):
            n_clips = int(v["duration"] / 2)
            assert row["qid"] == c["id"] and row["vid"] == v["id"] and row["query"] == e["sentence"] == c["caption"]
            assert row["duration"] == v["duration"] and row["relevant_windows"] == [[e["start"], e["end"]]]
            ids = row["relevant_clip_ids"]
            # exactly the 2-s clips (that the metric allocates) overlapping the event
            overlapping = [k for k in range(n_clips) if min(2 * k + 2, e["end"]) > max(2 * k, e["start"])]
            assert ids == overlapping and ids
            assert len(row["saliency_scores"]) == len(ids)
            for s in row["saliency_scores"]:
                assert len(s) == 3 and all(isinstance(x, int) and 0 <= x <= 4 for x in s)
            m = re.fullmatch(r"There are (\d+) highlight moments in the (.+) second\. Their saliency scores are (.+)\.",
                             item["QA"][0]["a"])
            assert m, item["QA"][0]["a"]
            assert int(m[1]) == len(ids)
            assert [float(t) for t in m[2].split(", ")] == [2.0 * k for k in ids]
            assert m[3].split(", ") == [f"{sum(s) / 3:.1f}" for s in row["saliency_scores"]]
            assert f"'{e['sentence']}'" in item["QA"][0]["q"]


def test_vhd_saliency_peaks_inside_event(tmp_path):
    generate_synthetic_dataset(tmp_path, seed=1, num_train=0, num_val=0, num_test=20, duration=16, size=32,
                               tasks=("vhd",), min_event_duration=6.0, max_events=1)
    for row in map(json.loads, (tmp_path / "annotations" / "highlight_test_release.jsonl").read_text().splitlines()):
        (s, e) = row["relevant_windows"][0]
        means = [sum(x) / 3 for x in row["saliency_scores"]]
        best = row["relevant_clip_ids"][int(np.argmax(means))]
        assert s <= 2 * best and 2 * best + 2 <= e  # the top clip is fully covered by the event
        assert max(means) >= 3.0


def test_train_all_merges_train_items(small):
    out, summary = small
    merged = _read(summary.train_all)
    parts = [i for t in TASKS for i in _items(out, t, "train")]
    key = lambda i: json.dumps(i, sort_keys=True)  # noqa: E731
    assert Counter(map(key, merged)) == Counter(map(key, parts))
    assert {i["source"] for i in merged} == {f"synthetic_{t}" for t in TASKS}


def test_tvg_chat_is_every_grounding_turn_of_a_video_in_a_drawn_order(small):
    out, _ = small
    single = _items(out, "tvg", "train")
    chats = _items(out, "tvg_chat", "train")
    videos = _read(out / "annotations" / "train.events.json")["videos"]
    assert [c["video"] for c in chats] == [v["video"] for v in videos]
    by_video = Counter(i["video"] for i in single)
    turns = [(c["video"], qa["q"], qa["a"]) for c in chats for qa in c["QA"]]
    assert sorted(turns) == sorted((i["video"], i["QA"][0]["q"], i["QA"][0]["a"]) for i in single)
    assert all(len(c["QA"]) == by_video[c["video"]] for c in chats)
    # the order is drawn: some multi-event videos do not start with their first event's query
    firsts = {i["video"]: i["QA"][0]["q"] for i in reversed(single)}  # the 1st event's query per video
    multi = [c for c in chats if len(c["QA"]) > 1]
    assert multi and any(c["QA"][0]["q"] != firsts[c["video"]] for c in multi)


def test_exist_asks_about_every_shape_type_and_answers_from_the_events(small):
    out, _ = small
    chats = _items(out, "exist", "train")
    videos = _read(out / "annotations" / "train.events.json")["videos"]
    assert [c["video"] for c in chats] == [v["video"] for v in videos]
    used = [f"{colour} {shape}" for colour, _, shape in EVENT_TYPES[:SMALL["num_event_types"]]]
    orders = set()
    for c, v in zip(chats, videos):
        present = {f"{ev['colour']} {ev['shape']}" for ev in v["events"]}
        asked = []
        for qa in c["QA"]:
            name = re.search(r"an? (\w+ \w+)(?: in| appear| at)", qa["q"])[1]
            asked.append(name)
            want = f"Yes, there is a {name}." if name in present else f"No, there is no {name}."
            assert qa["a"] == want, (v["id"], qa)
        assert sorted(asked) == sorted(used)
        orders.add(tuple(asked))
    assert len(orders) > 1  # the order is drawn per video


def test_templates_vary_and_tasks_subset(tmp_path):
    s = generate_synthetic_dataset(tmp_path, seed=0, num_train=10, num_val=0, num_test=0, size=16, duration=8, tasks=("tvg",))
    qs = {re.sub(r"'[^']*'", "Q", i["QA"][0]["q"]) for i in _read(s.instruct["tvg"]["train"])}
    assert len(qs) >= 3
    assert not list((tmp_path / "annotations").glob("highlight_*"))
    assert not (tmp_path / "annotations" / "train.caption_coco_format.json").exists()
    assert set(s.instruct) == {"tvg"}


# ---------------------------------------------------------------------------- determinism, manifest


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_identical_different_seed_differs(small, tmp_path):
    out, _ = small
    again = generate_synthetic_dataset(tmp_path / "again", **SMALL)
    a, b = _snapshot(out), _snapshot(again.out_dir)
    assert a.keys() == b.keys()
    assert {k for k in a if a[k] != b[k]} == set()  # JSON, manifest and mp4 bytes all identical
    frames_a, _ = _decode(out / "videos/test/syn_test_00000.mp4")
    frames_b, _ = _decode(again.out_dir / "videos/test/syn_test_00000.mp4")
    np.testing.assert_array_equal(frames_a, frames_b)

    other = generate_synthetic_dataset(tmp_path / "other", **{**SMALL, "seed": 4})
    assert _read(other.events["train"]) != _read(out / "annotations/train.events.json")
    first = "videos/train/syn_train_00000.mp4"
    assert (other.out_dir / first).read_bytes() != (out / first).read_bytes()


def test_splits_independent_of_other_split_sizes(small, tmp_path):
    out, _ = small
    s = generate_synthetic_dataset(tmp_path, **{**SMALL, "num_train": 1})
    assert _read(s.events["test"]) == _read(out / "annotations/test.events.json")


def test_rerun_is_noop_and_changes_regenerate(tmp_path):
    args = dict(seed=0, num_train=2, num_val=1, num_test=1, duration=(4, 6), size=16)
    first = generate_synthetic_dataset(tmp_path, **args)
    assert first.regenerated
    manifest = _read(first.manifest)
    assert manifest["config"] == SyntheticConfig(**args).to_json()
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}

    second = generate_synthetic_dataset(tmp_path, **args)
    assert not second.regenerated and second.num_events == first.num_events
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == mtimes

    # a different argument regenerates and leaves no stale files behind
    third = generate_synthetic_dataset(tmp_path, **{**args, "num_train": 1})
    assert third.regenerated and not (tmp_path / "videos/train/syn_train_00001.mp4").exists()

    # a damaged file (size differs from the manifest) regenerates
    vid = tmp_path / "videos/val/syn_val_00000.mp4"
    good = vid.read_bytes()
    vid.write_bytes(good[:100])
    assert generate_synthetic_dataset(tmp_path, **{**args, "num_train": 1}).regenerated
    assert vid.read_bytes() == good

    # an interrupted run (marker present, manifest gone) regenerates
    (tmp_path / "manifest.json").unlink()
    (tmp_path / ".generating").write_text("{}")
    again = generate_synthetic_dataset(tmp_path, **{**args, "num_train": 1})
    assert again.regenerated and not (tmp_path / ".generating").exists() and again.manifest.exists()
    assert not list(tmp_path.rglob("*.tmp"))

    assert generate_synthetic_dataset(tmp_path, **{**args, "num_train": 1}, force=True).regenerated


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "precious.mp4").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_synthetic_dataset(tmp_path, num_train=1, num_val=0, num_test=0, size=16, duration=4)
    assert (tmp_path / "videos" / "precious.mp4").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fps=5, time_grid=0.5), "time_grid \\* fps"),
        (dict(size=33), "even"),
        (dict(max_events=5, num_event_types=4), "max_events"),
        (dict(duration=(1.0, 1.5)), "cannot hold one event"),
        (dict(tasks=("tvg", "qa")), "tasks"),
        (dict(min_event_duration=1.0), "min_event_duration"),
        (dict(duration=(9, 5)), "duration"),
    ],
)
def test_invalid_settings_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_synthetic_dataset(tmp_path, **{"num_train": 1, "num_val": 0, "num_test": 0, **kwargs})
    assert not (tmp_path / "manifest.json").exists()


def test_config_object_and_keywords_are_the_same_dataset(tmp_path):
    args = dict(seed=2, num_train=1, num_val=0, num_test=1, duration=[4, 6], fps=4, size=16, tasks=["tvg"])
    cfg = SyntheticConfig(**args)
    assert (cfg.duration, cfg.fps, cfg.tasks) == ((4.0, 6.0), 4.0, ("tvg",))  # declared types, lists as tuples
    assert cfg == SyntheticConfig.from_dict(args, "run.synthetic_data")
    first = generate_synthetic_dataset(tmp_path, cfg)
    assert first.regenerated and first.config == cfg
    assert not generate_synthetic_dataset(tmp_path, **args).regenerated  # same settings: manifest matches
    with pytest.raises(TypeError, match="not both"):
        generate_synthetic_dataset(tmp_path, cfg, seed=2)
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['num_trian'\] in run.synthetic_data; allowed: .*'num_train'"):
        SyntheticConfig.from_dict({"num_trian": 3}, "run.synthetic_data")


def test_cli_has_one_option_per_config_field(monkeypatch):
    import argparse
    import dataclasses

    seen = {}

    def capture(self, args=None, namespace=None):
        seen.update({a.dest: a.default for a in self._actions})
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        main(["--out", "x"])
    fields = {f.name: f.default for f in dataclasses.fields(SyntheticConfig)}
    assert set(seen) - {"help", "out", "force"} == set(fields)
    for name, default in fields.items():
        assert seen[name] == (list(default) if isinstance(default, tuple) else default), name


def test_cli(tmp_path, capsys):
    s = main(["--out", str(tmp_path), "--num-train", "2", "--num-val", "0", "--num-test", "1",
              "--duration", "5", "--size", "16", "--seed", "7", "--tasks", "tvg", "dvc"])
    assert s.num_videos == {"train": 2, "test": 1}
    assert s.config.duration == (5.0, 5.0) and s.config.tasks == ("tvg", "dvc")
    assert all(v["duration"] == 5.0 for v in load_events(tmp_path, "train"))
    assert "generated" in capsys.readouterr().out


def test_generation_speed(tmp_path):
    """30 videos of 10 s at 64 px, 8 fps: well under 10 s (about 1 s when the machine is idle)."""
    t0 = time.perf_counter()
    s = generate_synthetic_dataset(tmp_path, num_train=30, num_val=0, num_test=0, duration=10, size=64, fps=8)
    elapsed = time.perf_counter() - t0
    assert s.num_videos == {"train": 30}
    assert elapsed < 10.0, f"generation took {elapsed:.1f} s"
    print(f"30 videos x 10 s @ 64 px: {elapsed:.2f} s")
    assert math.isclose(s.seconds, elapsed, rel_tol=0.5)


def test_baselines_script_first_event_oracle_and_rank_breakdown(small):
    import importlib.util

    out, summary = small
    spec = importlib.util.spec_from_file_location("synthetic_baselines", Path(__file__).parents[2] / "scripts" / "synthetic_baselines.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gt = _read(summary.eval_gt["tvg"]["test"])["annotations"]
    first_span = {v["file"]: [v["events"][0]["start"], v["events"][0]["end"]] for v in load_events(out, "test")}
    is_first = [a["timestamp"] == first_span[a["image_id"]] for a in gt]
    assert 0 < sum(is_first) < len(gt)  # some queries are about a later event
    base = mod.baselines(out, "test")
    assert base["oracle_first_event"]["R1@0.5"] == pytest.approx(100 * sum(is_first) / len(gt))
    exact = {str(a["id"]): {"timestamp": [a["timestamp"]]} for a in gt}
    assert all(r["R1@0.5"] == 100 for r in mod.by_event_rank(out, exact, "test").values())
    first = {str(a["id"]): {"timestamp": [first_span[a["image_id"]]]} for a in gt}
    ranks = mod.by_event_rank(out, first, "test")
    assert ranks["1"]["R1@0.5"] == 100 and all(ranks[k]["R1@0.5"] == 0 for k in ranks if k != "1")
    assert sum(r["queries"] for k, r in ranks.items() if k != "2+") == len(gt)
    assert ranks["2+"]["queries"] == len(gt) - sum(is_first)
    summary_text = mod.summary_line(base | {"model": {"R1@0.5": 12.5}, "model_by_event_rank": ranks}, "test")
    assert summary_text.startswith(f"tiny TimeChat R1@0.5 12.5 on test ({len(gt)} queries, 2nd-or-later events 0.0")
    assert f"first-event oracle {base['oracle_first_event']['R1@0.5']:.1f}" in summary_text


def test_timed_text_gives_every_item_its_videos_event_spans_and_names(tmp_path):
    kw = dict(num_train=3, num_val=1, num_test=0, tasks=("tvg", "timeline"))
    plain = generate_synthetic_dataset(tmp_path / "plain", SyntheticConfig(**kw))
    timed = generate_synthetic_dataset(tmp_path / "timed", SyntheticConfig(timed_text=True, **kw))
    for split in ("train", "val"):
        events = {v["video"]: v["events"] for v in load_events(tmp_path / "timed", split)}
        for task in ("tvg", "timeline"):
            a, b = _read(plain.instruct[task][split]), _read(timed.instruct[task][split])
            assert len(a) == len(b) > 0
            for x, y in zip(a, b):
                assert "timed_text" not in x and {k: v for k, v in y.items() if k != "timed_text"} == x
                assert y["timed_text"] == [[ev["start"], ev["end"], f"{ev['colour']} {ev['shape']}"]
                                           for ev in events[y["video"]]]
    cli = main(["--out", str(tmp_path / "cli"), "--num-train", "2", "--num-val", "0", "--num-test", "0",
                "--tasks", "tvg", "--timed-text"])
    assert all("timed_text" in item for item in _read(cli.instruct["tvg"]["train"]))
