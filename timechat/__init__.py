"""TimeChat: a time-sensitive multimodal LLM for long video understanding (CVPR 2024).

Importing this package has no side effects: no registration, downloads or logging setup.
"""

__version__ = "0.1.0"
