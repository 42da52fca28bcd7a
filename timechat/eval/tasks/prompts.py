"""Every task prompt by name, for ``eval.prompt`` / ``eval.post_check_prompt`` (spec 5.4).

The prompts themselves live with their tasks (`dense_captioning.DVC_PROMPTS`,
`grounding.TVG_PROMPTS`, `highlights.VHD_PROMPTS`); as in the original, where ``--prompt_file`` could
name any file, any task accepts any of them.
"""

from __future__ import annotations

from pathlib import Path

from timechat.eval.tasks.common import read_prompt_file
from timechat.eval.tasks.dense_captioning import DVC_PROMPTS
from timechat.eval.tasks.grounding import TVG_PROMPTS
from timechat.eval.tasks.highlights import VHD_PROMPTS

#: The original's ``prompts/*.txt`` by file stem (first line, stripped), plus fixed variants.
TASK_PROMPTS: dict[str, str] = {**DVC_PROMPTS, **TVG_PROMPTS, **VHD_PROMPTS}


def get_prompt(name: str) -> str:
    """Return the task prompt called ``name`` (a key of :data:`TASK_PROMPTS`).

    Raises:
        KeyError: naming the unknown prompt and listing the known ones.
    """
    try:
        return TASK_PROMPTS[name]
    except KeyError:
        raise KeyError(f"unknown prompt {name!r}; known prompts: {sorted(TASK_PROMPTS)}") from None


def resolve_prompt(name_or_path: str | Path) -> str:
    """A task prompt by name (a key of :data:`TASK_PROMPTS`) or from a prompt file.

    Args:
        name_or_path: a prompt name such as ``tvg_description_zeroshot``, or the path of a prompt file
            (its first line is used, see :func:`read_prompt_file`).

    Returns:
        The prompt template.

    Raises:
        FileNotFoundError: if it is neither a known name nor an existing file (the message lists the
            known names).
    """
    if isinstance(name_or_path, str) and name_or_path in TASK_PROMPTS:
        return TASK_PROMPTS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a known prompt name ({sorted(TASK_PROMPTS)}) nor a prompt file"
        )
    return read_prompt_file(path)
