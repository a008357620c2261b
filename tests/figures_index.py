"""Write figures/README.md: an index of every committed run record under figures/, made from the records themselves so
that it stays true.

    python tests/figures_index.py            # rewrite figures/README.md
    python tests/figures_index.py --check    # exit 1 when figures/README.md is not what this script writes

For each folder that holds files: what it is the record of, the command and commit that made it (a run's results.json;
else the provenance that chirploc writes into each PNG; else a record's `Made by` line or a JSON's `command`), the
recipe a reproduction actually trained (backbone, epochs, fresh samples, ...: a preset's name alone is not a recipe,
since presets changed under the records), whether README.md or RESULTS.md cites it, and which chapters or scripts read it. Records of
one training run (identical training history and data) are listed together.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIG = ROOT / 'figures'
OUT = FIG / 'README.md'
# where a record is read from, besides README.md (which says what each one shows)
READERS = ['nbs/*.ipynb', 'chirploc/*.py', 'tests/*.py', 'tests/*.sh', '.ci/*']
# what a reproduction's recipe is: the config fields that tell the runs apart (seed and folders left out)
RECIPE = [('backbone', None), ('epochs', 'epochs'), ('fresh_samples', 'fresh samples'), ('n_samples', 'samples'),
          ('p_empty', 'p_empty'), ('batch_size', 'batch'), ('lr', 'lr'), ('schedule', 'schedule'), ('keep', 'keep'),
          ('targets', 'targets')]
# what the records themselves do not say (checked against them when this was written)
NOTES = {
    'benchmarks': 'speed measurements: the generator, CPU training and inference, the `paper` preset\'s stage estimate',
    'cnn': 'a small CNN on the smoke data, a comparison backbone',
    'experiments/decode': 'how the heatmaps are read into labels, for the model trained in runs/ship-rb0 '
                          '(the shipped model then)',
    'experiments/decode/fresh-2': 'the same measurement for the shipped model of the 3-epoch fresh-samples recipe, seed 2',
    'experiments/decode/fresh-6ep-1': 'the same measurement for the shipped model (6 epochs, seed 1: `figures/ship`)',
    'experiments/refine': 'the likelihood refinement (`--refine`) of the shipped model (`figures/ship`)',
    'experiments/refine/fresh-2': 'the same for the previous shipped model (3-epoch fresh-samples recipe, seed 2)',
    'experiments/refine/whitened-rb-0': 'the same for the shipped model before that (runs/ship-rb0)',
    'experiments/ship-whitened-rb': 'the README\'s step "+ read noise in training": the model of '
                                    '`seeds/ship-whitened-rb-0` read before the joint reading',
    'every-target': 'the `every-target` preset (named `full` when it ran): the six targets with 10% chirp-free samples (detection)',
    'probe': 'linear probes of frozen backbones and the LoRA checks (03d_lora, tests/measure_probe.py)',
    'scan': '`chirploc scan` on a synthetic 1-hour 4-channel EDF recording: recall, false events, speed, memory (tests/bench_scan.py)',
    'limit/bench': 'the limit search, fast against reference in the same run (tests/bench_limit.py)',
    'limit/bench-all': 'the limit search on all 10,000 arrays of the committed record, one tier and tiers (tests/bench_limit.py)',
    'limit/bench-figures': 'the limit search on all 500 figures of the committed record (tests/bench_limit.py)',
    'experiments/refine/gate': 'the gated refinement on fresh arrays and figures (tests/measure_gate.py)',
    'limit': 'the maximum-likelihood limit (05d_limit) on the smoke test split and 500 figures',
    'paper/attempt-1': 'the `paper` preset\'s first attempt on one H100: stage times, MAE pretraining, training history',
    'seeds': 'the spread over seeds of every recipe (spread.png, drawn by `chirploc results`)',
    'ship': 'the shipped default model\'s run (chirploc/default_model)',
    'signals': 'the SNR sweep of 08_signals: error against the signal-to-noise ratio, the model and the ridge tracker',
    'smoke': 'the CPU reproduction of the paper (`smoke` preset, seed 0)',
    'lora': "the paper's method at CPU scale (`lora` preset, seed 0): vit-tiny pretrained here without labels (03e_denoise), LoRA + [CLS] head",
    'experiments/lora-full-0': 'the `lora` preset with every weight of the same pretrained vit-tiny trained (full fine-tuning), seed 0',
    'experiments/lora-full-1': 'the same full fine-tuning on seed 1 (its data and its own pretrained backbone, runs/lora-1)',
    'experiments/lora-full-2': 'the same full fine-tuning on seed 2 (its data and its own pretrained backbone, runs/lora-2)',
}


def rel(p: Path) -> str:
    return p.relative_to(FIG).as_posix()


def record_folders() -> list[Path]:
    "Every folder under figures/ that holds a file of its own, in path order."
    return sorted({p.parent for p in FIG.rglob('*') if p.is_file() and p != OUT and p.parent != FIG},
                  key=lambda p: rel(p).split('/'))


def png_provenance(folder: Path) -> list[tuple[str, str]]:
    "(command, commit) that chirploc.core writes into each PNG's text chunks."
    from PIL import Image
    found = []
    for png in sorted(folder.glob('*.png')):
        with Image.open(png) as im:
            info = im.info
        if 'chirploc:command' in info:
            found.append((info['chirploc:command'], info.get('chirploc:commit', '')))
    return found


COMMAND = re.compile(r'`((?:\.venv/bin/)?(?:python|chirploc|papermill|nbdev_\w+|bash) [^`]+)`')
COMMIT = re.compile(r'commit ([0-9a-f]{7,40}(?:-dirty)?)')


def md_provenance(folder: Path) -> list[tuple[str, str]]:
    "The first command in backticks of each .md record and the first `commit SHA` after it."
    found = []
    for md in sorted(folder.glob('*.md')):
        text = md.read_text(encoding='utf-8')
        if md.name.startswith('fig8_'):
            continue
        # an inline `command`, else the commands of the first fenced block that holds any
        m = COMMAND.search(text)
        block = re.search(r'```\w*\n((?:(?:\.venv/bin/)?(?:python|chirploc|papermill|bash) [^\n]+\n)+)```', text)
        cmd = m.group(1) if m else '; '.join(block.group(1).split('\n')[:-1]) if block else None
        if cmd:
            c = COMMIT.search(text, m.end() if m else 0) or COMMIT.search(text)
            found.append((cmd, c.group(1) if c else ''))
    return found


def json_provenance(folder: Path) -> list[tuple[str, str]]:
    found = []
    for js in sorted(folder.glob('*.json')):
        if js.name == 'results.json':
            continue
        try:
            d = json.loads(js.read_text())
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get('command'), str):
            found.append((d['command'], d.get('git_commit', '')))
    return found


def heading(folder: Path) -> str:
    "The first `# heading` of the folder's README.md, record.md or other .md (not a run's fig8 table)."
    mds = sorted(folder.glob('*.md'), key=lambda p: (p.name not in ('README.md', 'record.md'), p.name))
    for md in mds:
        if md.name.startswith('fig8_'):
            continue
        for line in md.read_text(encoding='utf-8').splitlines():
            if line.startswith('# '):
                return line[2:].strip()
    return ''


def recipe(r: dict, extra: tuple = ()) -> str:
    "backbone, epochs, fresh or fixed training samples; and the `extra` config fields (those that differ in a preset)."
    if isinstance(r.get('recipe'), str): return r['recipe']     # a measurement's record that says what it trained
    c = r.get('config') or {}
    parts = [str(c.get('backbone', r.get('backbone', '?'))), f'{c.get("epochs", r.get("epochs_run", "?"))} epochs']
    # records older than the option hold no fresh_samples: they trained on one fixed set
    parts.append('fresh samples' if c.get('fresh_samples') else 'fixed samples')
    for key, name in RECIPE:
        if key in extra and c.get(key) is not None:
            parts.append(f'{name or key} {c[key]}')
    return ', '.join(parts)


def varying(runs: dict) -> dict[str, tuple]:
    "Per preset, the recipe fields (beyond backbone, epochs, fresh samples) whose values differ between its runs."
    by = defaultdict(list)
    for r in runs.values():
        by[r.get('preset')].append(r.get('config') or {})
    return {p: tuple(k for k, _ in RECIPE if k not in ('backbone', 'epochs', 'fresh_samples')
                     and len({json.dumps(c.get(k)) for c in cs if c.get(k) is not None}) > 1)
            for p, cs in by.items()}


def citations(text: str, folders: list[Path]) -> dict[str, int]:
    "How often `text` names each folder (a path inside a folder counts for the deepest folder that holds it)."
    names = sorted((rel(f) for f in folders), key=len, reverse=True)
    count: dict[str, int] = defaultdict(int)
    for token in re.findall(r'figures/([A-Za-z0-9_.\-/]+)', text):
        token = token.rstrip('.,:;)/')
        for n in names:
            if token == n or token.startswith(n + '/'):
                count[n] += 1
                break
    return count


def code_text(f: Path) -> str:
    "A script's text; of a notebook, its code cells only (a chapter's prose that names a record does not read it)."
    text = f.read_text(encoding='utf-8', errors='replace')
    if f.suffix != '.ipynb':
        return text
    return '\n'.join(''.join(c['source']) for c in json.loads(text)['cells'] if c['cell_type'] == 'code')


def readers(folders: list[Path]) -> dict[str, list[str]]:
    "Which chapters' code cells and which scripts name each folder (or a file in it)."
    found: dict[str, list[str]] = defaultdict(list)
    for pattern in READERS:
        for f in sorted(ROOT.glob(pattern)):
            if not f.is_file() or f.name == Path(__file__).name:
                continue
            for n in citations(code_text(f), folders):
                found[n].append(f.relative_to(ROOT).as_posix())
    return found


def short(sha: str) -> str:
    return sha[:7] + ('-dirty' if sha.endswith('-dirty') else '') if sha else ''


def command(c: str, n: int = 150) -> str:
    return f'`{c}`' if len(c) <= n else f'`{c[:n].rstrip()} ...`'


def cell(s: str) -> str:
    return s.replace('|', '\\|').replace('\n', ' ')


def size(folder: Path) -> tuple[int, float]:
    "The folder's own files: how many, and their MB."
    files = [p for p in folder.iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def megabytes(mb: float) -> str:
    return f'{mb:.1f} MB' if mb >= 0.1 else f'{mb * 1e3:.0f} kB'


def index() -> str:
    folders = record_folders()
    readme = '\n'.join((ROOT / f).read_text(encoding='utf-8') for f in ('README.md', 'RESULTS.md'))  # the front page and its long form
    cited, read = citations(readme, folders), readers(folders)
    runs = {rel(f): json.loads((f / 'results.json').read_text()) for f in folders if (f / 'results.json').exists()}
    extra = varying(runs)
    rec = {n: recipe(r, extra.get(r.get('preset'), ())) for n, r in runs.items()}
    n_files = sum(size(f)[0] for f in folders)
    mb = sum(size(f)[1] for f in folders)
    out = ['# Run records', '',
           f'Every folder under `figures/` that holds files ({len(folders)} folders, {n_files} files, {mb:.0f} MB): '
           'what it is the record of, the command and commit that made it, whether README.md or RESULTS.md cites it and what '
           'reads it. Written by `python tests/figures_index.py` from the records themselves (a run\'s '
           '`results.json`, the provenance in each PNG, a record\'s `Made by` line); `tests/test_figures_index.py` '
           'fails when this file is out of date. Do not edit it by hand: notes live in the script.', '',
           '"cited": how many times README.md and RESULTS.md name the folder or a file in it. "read by": the chapters whose code '
           'cells and the scripts that name it (a chapter that reads a record fails without it; a measurement script '
           'names the folder it writes to).', '',
           '## Reproduction runs', '',
           'A preset\'s name is not a recipe: the `ship` preset changed under these records, so a command that says '
           'only `--preset ship` trained what the preset was at its commit. "recipe" is what the run\'s '
           '`results.json` says it trained: backbone, epochs, training samples drawn anew each epoch (fresh) or one '
           'fixed set, and any other setting that differs between the runs of its preset.', '',
           '| folder | preset, seed | recipe | command | commit (date) | cited | read by |',
           '|---|---|---|---|---|---:|---|']
    for name, r in runs.items():
        what = NOTES.get(name, '')
        out.append('| ' + ' | '.join(cell(x) for x in [
            f'[`{name}`]({name}/)' + (f': {what}' if what else ''),
            f'{r.get("preset", "")}, {r.get("seed", "")}', rec[name],
            command(r['command'], 200) if r.get('command') else '(not recorded)',
            f'{short(r.get("git_commit", ""))} ({(r.get("created") or "")[:10]})', str(cited.get(name, 0)),
            ', '.join(f'`{p}`' for p in read.get(name, []))]) + ' |')

    # one training run, several records: the same history on the same data
    same = defaultdict(list)
    for name, r in runs.items():
        if r.get('history'):
            same[(json.dumps(r['history'], sort_keys=True), r.get('data_sha256'))].append(name)
    groups = [g for g in same.values() if len(g) > 1]
    out += ['', '### One training run, two records', '']
    if groups:
        out.append('Identical training history and data: one model, evaluated twice (the later record adds what its '
                   'evaluation settings add; where the commits differ, so may the test numbers).')
        out.append('')
        for g in groups:
            desc = []
            for n in sorted(g, key=lambda n: runs[n].get('created', '')):
                r, c = runs[n], runs[n].get('config') or {}
                same_t = r.get('targets') == runs[g[0]].get('targets')
                desc.append(f'`{n}` ({short(r.get("git_commit", ""))}, {(r.get("created") or "")[:10]}, '
                            f'limit_n {c.get("limit_n")}, refine {c.get("refine")}, cited {cited.get(n, 0)})')
            t_same = len({json.dumps(runs[n].get('targets'), sort_keys=True) for n in g}) == 1
            out.append(f'- {" and ".join(desc)}: work dir `{(runs[g[0]].get("config") or {}).get("work_dir")}`; '
                       f'test numbers {"identical" if t_same else "differ (evaluated by different code)"}')
    else:
        out.append('None.')

    # one preset, several recipes
    by_preset = defaultdict(lambda: defaultdict(list))
    for name, r in runs.items():
        by_preset[r.get('preset')][rec[name]].append(name)
    out += ['', '### One preset name, several recipes', '']
    for preset, recipes in by_preset.items():
        if len(recipes) < 2:
            continue
        out.append(f'`{preset}`:')
        out.append('')
        for recipe_, names in recipes.items():
            bare = [n for n in names if re.fullmatch(rf'chirploc reproduce --preset {preset}( --seed \d+)?'
                                                     r'( --work_dir \S+)?', runs[n].get('command') or '')]
            out.append(f'- {recipe_}: ' + ', '.join(f'`{n}`' + (' (command: the preset alone)' if n in bare else '')
                                                for n in names))
        out.append('')

    out += ['## Other records', '',
            '| folder | what | made by | commit | files | cited | read by |', '|---|---|---|---|---|---:|---|']
    for f in folders:
        name = rel(f)
        if name in runs:
            continue
        prov = md_provenance(f) + json_provenance(f) + png_provenance(f)
        cmds = list(dict.fromkeys(c for c, _ in prov))
        commits = list(dict.fromkeys(short(s) for _, s in prov if s))
        what = NOTES.get(name) or heading(f)
        made = ('; '.join(command(c) for c in cmds[:2]) + (f' (and {len(cmds) - 2} more)' if len(cmds) > 2 else '')
                if cmds else '(not recorded)')
        n, m = size(f)
        out.append('| ' + ' | '.join(cell(x) for x in [
            f'[`{name}`]({name}/)', what, made, ', '.join(commits), f'{n}, {megabytes(m)}', str(cited.get(name, 0)),
            ', '.join(f'`{p}`' for p in read.get(name, []))]) + ' |')
    uncited = [rel(f) for f in folders if not cited.get(rel(f))]
    out += ['', '## Not cited by README.md or RESULTS.md', '',
            ', '.join(f'`{n}`' for n in uncited) if uncited else 'Every folder is cited.', '']
    return '\n'.join(out)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='exit 1 if figures/README.md is out of date')
    a = ap.parse_args()
    text = index()
    if a.check:
        if not OUT.exists() or OUT.read_text(encoding='utf-8') != text:
            sys.exit('figures/README.md is out of date: run python tests/figures_index.py')
        print('figures/README.md is up to date')
    else:
        OUT.write_text(text, encoding='utf-8')
        print(f'wrote {OUT.relative_to(ROOT)}')
