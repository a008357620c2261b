"""figures/README.md, the index of the committed run records, is what tests/figures_index.py makes of them now: a record
added, removed or newly cited by README.md without rerunning the script fails here."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('figures_index', ROOT / 'tests' / 'figures_index.py')
fi = sys.modules['figures_index'] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fi)


def test_every_record_listed():
    text = fi.index()
    folders = fi.record_folders()
    assert folders and all(f'[`{fi.rel(f)}`]({fi.rel(f)}/)' in text for f in folders)
    # a reproduction's row names its recipe, not only its preset
    assert 'chirploc-heatmap-whitened-rb, 6 epochs, fresh samples' in text


def test_index_up_to_date():
    assert fi.OUT.read_text(encoding='utf-8') == fi.index(), \
        'figures/README.md is out of date: run python tests/figures_index.py'
