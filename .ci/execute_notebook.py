"""Execute one chapter in place (called by .ci/notebooks): every code cell but those flagged `slow` or `eval: false`,
outputs kept, progress-bar residue dropped, absolute paths written relative to the repository or the temporary folder."""
import copy
import os
import re
import sys
import tempfile
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.process import extract_directives

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r'\r|\d+it/s\]|it/s\]|s/it\]|\|[#█▏▎▍▌▋▊▉ ]+\|')  # tqdm's bars and rates


def skipped(cell) -> bool:
    if cell.cell_type != 'code': return True
    d = extract_directives(copy.copy(cell), remove=False)
    return 'slow' in d or d.get('eval:', [''])[0].lower() == 'false'


def tidy(text: str) -> str:
    "Absolute paths as a reader's machine would show them: the repository's relative, temporary folders as <tmp>."
    text = text.replace(str(ROOT) + '/', '').replace(str(ROOT), '.')
    text = re.sub(re.escape(tempfile.gettempdir()) + r"/[^/\s'\")]+", '<tmp>', text)
    return text.replace(str(Path.home()), '~')


def clean_outputs(cell):
    outs = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream':
            text = ''.join(o['text']) if isinstance(o['text'], list) else o['text']
            if o.get('name') == 'stderr' and PROGRESS.search(text): continue  # a progress bar, not a result
            o['text'] = tidy(text)
        for kind in ('text/plain', 'text/markdown', 'text/html'):
            data = o.get('data', {})
            if kind in data:
                v = data[kind]
                data[kind] = tidy(''.join(v) if isinstance(v, list) else v)
        outs.append(o)
    cell['outputs'] = outs


def main(path):
    path = Path(path).resolve()
    nb = read_nb(path)
    for c in nb.cells:
        if c.cell_type == 'code': c['outputs'], c['execution_count'] = [], None
    os.environ.setdefault('TQDM_DISABLE', '1')
    shell = CaptureShell(path, mpl_format='jpeg')  # spectrograms are noise: JPEG keeps nbs/ small
    cwd = os.getcwd()
    os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=skipped)
    except Exception:
        tb = shell.prettytb(fname=path) if hasattr(shell, '_cell_idx') else ''
        sys.stderr.write(tb + '\n'); raise SystemExit(f"{path.name}: a cell failed; the notebook was not written")
    finally: os.chdir(cwd)
    for c in nb.cells:
        if c.cell_type == 'code': clean_outputs(c)
    write_nb(nb, path)


if __name__ == '__main__':
    for p in sys.argv[1:]: main(p)
