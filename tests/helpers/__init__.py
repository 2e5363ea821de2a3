"""What the tests share: run builders (``runs``), tiny offline models (``tiny_models``), pretrained-SAE files in
their published layouts (``pretrained_formats``), superposition data (``superposition``), the CLI as a subprocess
(``cli``), a keyword LLM stand-in (``keyword_oracle``) and the pytest fixture plugins conftest.py registers
(``llm_fixtures``, ``crosscode_fixture``), the peer venvs built in the background (``peer_envs``). ``tests/`` is on sys.path (pyproject.toml's ``pythonpath``), so tests
import these as ``helpers.<module>``; ``ROOT`` is the repository root."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
