"""Java tools behind the DVC metrics: Stanford PTBTokenizer 3.4.1 and METEOR 1.5.

The original (``metrics/dvc/metrics/ptbtokenizer.py`` and ``meteor.py`` of TimeChat, the Vid2Seq
copies of the pycocoevalcap wrappers) launches one PTBTokenizer JVM per tokenised batch (10 per
run) and one METEOR JVM per scorer (2 per run). Here one :class:`JavaSession` holds

* a PTBTokenizer runner that tokenises every distinct caption of a run in **one** JVM launch and
  returns each caption's raw output lines (so the caller can re-create the original's batches,
  including the line shift a ``\\r`` causes), and
* **one** persistent METEOR process (``-stdio -l en -norm``, the original's flags), fed with
  pipelined ``SCORE`` / ``EVAL`` lines; SCORE statistics are cached per (hypothesis, references).

The jars are the ones shipped in the ``pycocoevalcap`` wheel (byte-identical to TimeChat's).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

# Tokens the original drops after PTB tokenisation (ptbtokenizer.PUNCTUATIONS).
PTB_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                              ".", "?", "!", ",", ":", "-", "--", "...", ";"])


class JavaUnavailableError(RuntimeError):
    """Java or the pycocoevalcap jars are missing, so the DVC caption metrics cannot run."""


def _pycocoevalcap_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise JavaUnavailableError("pycocoevalcap is not installed (it ships the METEOR / PTB jars)")
    return Path(list(spec.submodule_search_locations)[0])


def default_jars() -> tuple[Path, Path]:
    """(meteor-1.5.jar, stanford-corenlp-3.4.1.jar) from the pycocoevalcap package."""
    root = _pycocoevalcap_dir()
    return root / "meteor" / "meteor-1.5.jar", root / "tokenizer" / "stanford-corenlp-3.4.1.jar"


def java_available(java: str = "java") -> bool:
    """True when a ``java`` executable and both jars are present."""
    try:
        meteor, corenlp = default_jars()
    except JavaUnavailableError:
        return False
    return shutil.which(java) is not None and meteor.is_file() and corenlp.is_file()


class JavaSession:
    """One PTB tokenizer runner + one persistent METEOR 1.5 process, reusable across runs.

    Use as a context manager (or call :meth:`close`). Not thread-safe.

    Args:
        java: the java executable.
        meteor_jar / corenlp_jar: jar paths; default: the pycocoevalcap copies.
    """

    def __init__(self, java: str = "java", meteor_jar: str | Path | None = None,
                 corenlp_jar: str | Path | None = None):
        default_meteor, default_corenlp = default_jars()
        self.java = java
        self.meteor_jar = Path(meteor_jar or default_meteor)
        self.corenlp_jar = Path(corenlp_jar or default_corenlp)
        for jar in (self.meteor_jar, self.corenlp_jar):
            if not jar.is_file():
                raise JavaUnavailableError(f"jar not found: {jar}")
        if shutil.which(java) is None:
            raise JavaUnavailableError(f"java executable {java!r} not found (needed for PTB / METEOR)")
        self._meteor: subprocess.Popen | None = None
        self._stats_cache: dict[tuple[str, tuple[str, ...]], str] = {}
        self._tok_cache: dict[str, list[str]] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start_meteor(self) -> None:
        """Launch the METEOR JVM now (it loads a 60 MB paraphrase table: start it early)."""
        if self._meteor is None:
            # Same flags as the original; cwd = jar folder so METEOR finds data/paraphrase-en.gz.
            self._meteor = subprocess.Popen(
                [self.java, "-jar", "-Xmx2G", self.meteor_jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
                cwd=self.meteor_jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )

    def close(self) -> None:
        """Stop the METEOR process (if started)."""
        if self._meteor is not None:
            proc, self._meteor = self._meteor, None
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def __enter__(self) -> JavaSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- PTB tokenizer ----------------------------------------------------------------------
    def ptb_lines(self, texts: Iterable[str]) -> dict[str, list[str]]:
        """Raw PTBTokenizer output lines of each text, tokenised as its own input line(s).

        Texts are tokenised with ``-preserveLines -lowerCase`` like the original; a text holding a
        line break the tokenizer honours (``\\r``, form feed, ...) yields several lines. All texts
        not seen before by this session go through one JVM launch, separated by a sentinel line.

        Args:
            texts: captions, already with ``\\n`` replaced by a space (as the original does).
        Returns:
            text -> list of output lines (before punctuation removal).
        """
        todo = [t for t in dict.fromkeys(texts) if t not in self._tok_cache]
        if todo:
            sentinel = "zqxjsentinelvkwz"
            while any(sentinel in t for t in todo):
                sentinel += "q"
            fd, tmp = tempfile.mkstemp(suffix=".txt")
            try:
                # Text mode with the locale encoding, as the original writes its temp file.
                with os.fdopen(fd, "w") as f:
                    f.write("".join(f"{t}\n{sentinel}\n" for t in todo))
                proc = subprocess.run(
                    [self.java, "-cp", str(self.corenlp_jar), "edu.stanford.nlp.process.PTBTokenizer",
                     "-preserveLines", "-lowerCase", tmp],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                )
            finally:
                os.remove(tmp)
            if proc.returncode != 0:
                raise RuntimeError(f"PTBTokenizer failed: {proc.stderr.decode(errors='replace')[-2000:]}")
            groups: list[list[str]] = [[]]
            for line in proc.stdout.decode().split("\n"):
                if line == sentinel:
                    groups.append([])
                else:
                    groups[-1].append(line)
            groups.pop()  # whatever follows the last sentinel (an empty string)
            if len(groups) != len(todo):
                raise RuntimeError(f"PTBTokenizer output out of step: {len(groups)} groups for {len(todo)} texts")
            self._tok_cache.update(zip(todo, groups))
        return self._tok_cache

    def seed_tokens(self, text: str, lines: list[str]) -> None:
        """Declare the tokenizer output of a text without running Java (placeholder strings)."""
        self._tok_cache[text] = lines

    # -- METEOR -----------------------------------------------------------------------------
    def _exchange(self, lines: list[str], n_replies: int) -> list[str]:
        """Write all lines (in a thread, so full pipes cannot deadlock) and read n_replies lines."""
        self.start_meteor()
        proc = self._meteor
        error: list[BaseException] = []

        def write() -> None:
            try:
                for chunk_start in range(0, len(lines), 512):
                    proc.stdin.write("".join(f"{x}\n" for x in lines[chunk_start:chunk_start + 512]).encode())
                proc.stdin.flush()
            except BaseException as e:  # surfaced below
                error.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        replies = []
        for _ in range(n_replies):
            line = proc.stdout.readline()
            if not line:
                writer.join()
                raise RuntimeError(f"METEOR process ended early (exit code {proc.poll()}); {error}")
            replies.append(line.decode())
        writer.join()
        if error:
            raise RuntimeError(f"writing to METEOR failed: {error[0]!r}")
        return replies

    def meteor_scores(self, jobs: Sequence[Sequence[tuple[str, Sequence[str]]]]) -> list[tuple[list[float], float]]:
        """METEOR of several scorer calls, each a list of (hypothesis, references) segments.

        Each job reproduces one ``Meteor.compute_score`` call of the original: one ``SCORE`` line
        per segment (hypothesis with ``|||`` removed and double spaces collapsed once), then one
        ``EVAL`` line over the segments' statistics, whose answer is the per-segment scores and the
        aggregate (statistics pooled over the segments).

        Args:
            jobs: per job, its segments in the order the original sends them.
        Returns:
            per job, ``(segment scores, aggregate score)`` as parsed floats (NaN possible).
        """
        keys = []
        for job in jobs:
            for hyp, refs in job:
                keys.append((hyp.replace("|||", "").replace("  ", " "), tuple(refs)))
        todo = [k for k in dict.fromkeys(keys) if k not in self._stats_cache]
        if todo:
            score_lines = [" ||| ".join(("SCORE", " ||| ".join(refs), hyp)) for hyp, refs in todo]
            replies = self._exchange(score_lines, len(score_lines))
            self._stats_cache.update(zip(todo, (r.strip() for r in replies)))
        eval_lines, counts = [], []
        pos = 0
        for job in jobs:
            stats = [self._stats_cache[k] for k in keys[pos:pos + len(job)]]
            pos += len(job)
            eval_lines.append("EVAL ||| " + " ||| ".join(stats))
            counts.append(len(job))
        replies = self._exchange(eval_lines, sum(c + 1 for c in counts))
        out, pos = [], 0
        for c in counts:
            seg = [float(r) for r in replies[pos:pos + c]]
            out.append((seg, float(replies[pos + c])))
            pos += c + 1
        return out
