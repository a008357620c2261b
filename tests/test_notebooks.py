"""The chapters are committed executed (`bash .ci/notebooks`): a reader sees their figures, tables and checks without
running anything. Here: every chapter has outputs and none holds an error, progress-bar residue or an absolute path;
nbs/ stays small; and the reproduction's papermill parameters are the fields of ReproConfig."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / 'nbs').glob('*.ipynb'))
ABSOLUTE = re.compile(r"(?<![\w.])/(tmp|work|root|home|Users|private|var/folders)/")


def outputs(nb):
    for c in nb['cells']:
        if c['cell_type'] == 'code':
            for o in c.get('outputs', []): yield c, o


def text_of(o) -> str:
    parts = [o.get('text', '')] + [o.get('data', {}).get(k, '') for k in ('text/plain', 'text/markdown', 'text/html')]
    parts += [''.join(o.get('traceback', []))]
    return ''.join(''.join(p) if isinstance(p, list) else p for p in parts)


@pytest.mark.parametrize('path', CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_is_executed_and_clean(path):
    nb = json.loads(path.read_text())
    outs = list(outputs(nb))
    assert outs, f"{path.name} holds no outputs: run `bash .ci/notebooks {path.relative_to(ROOT)}`"
    for cell, o in outs:
        src = ''.join(cell['source'])[:60]
        assert o['output_type'] != 'error', f"{path.name}: an error output in the cell starting {src!r}"
        t = text_of(o)
        assert not ABSOLUTE.search(t), f"{path.name}: an absolute path in the output of {src!r}: {ABSOLUTE.search(t).group(0)}"
        assert '\r' not in t and 'it/s]' not in t, f"{path.name}: progress-bar residue in the output of {src!r}"


def test_chapters_are_small():
    total = sum(p.stat().st_size for p in CHAPTERS)
    assert total < 8e6, f"nbs/ holds {total / 1e6:.1f} MB of notebooks; keep figures small (low dpi, few per chapter)"


def test_papermill_parameters_are_the_options():
    from chirploc.reproduce import OPTION_NAMES
    nb = json.loads((ROOT / 'nbs' / '07_reproduce.ipynb').read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    names = [t.id for node in ast.parse(''.join(cell['source'])).body for t in node.targets]
    assert sorted(names) == sorted(OPTION_NAMES) and len(names) == len(set(names))
