"""Static HTML docs without Quarto or Jupyter: the README, the executed chapters in nbs/ (in order) and the markdown
records they link to, rendered by nbconvert into one folder that works opened from disk.

    python .ci/build_docs.py [OUT]        # OUT defaults to _docs/ (ignored by git); `bash .ci/docs` runs this

- every chapter's committed outputs as they are (nothing is executed), its markdown images embedded as data URIs;
- README.md and the .md files it links to (figures/README.md, records under figures/) as pages of their own, their
  images embedded too;
- links between pages rewritten to the HTML pages (`04_train.ipynb` -> `04_train.html`); a link to any other file or
  folder of the checkout points at it relative to the page, so it opens from disk;
- index.html: the pages in order, each chapter with its title and one-line summary, and a bar at the top of every
  page (contents, previous, next).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# nbs/index.ipynb is nbdev's home page; here index.html is the contents, so that chapter gets another name
RENAMED = {'index': 'overview'}


def chapters(repo: Path = ROOT) -> list[Path]:
    "The chapters in reading order: nbs/index.ipynb (the overview) first, then the numbered ones by name."
    nbs = sorted((repo / 'nbs').glob('*.ipynb'))
    return sorted(nbs, key=lambda p: (p.stem != 'index', p.name))


def page_name(nb: Path) -> str:
    return RENAMED.get(nb.stem, nb.stem) + '.html'


def title_and_summary(cells: list) -> tuple[str, str]:
    "A chapter's `# title` and its `> summary` line, from its first markdown cell."
    src = next((''.join(c['source']) for c in cells if c['cell_type'] == 'markdown'), '')
    title = next((l[2:].strip() for l in src.splitlines() if l.startswith('# ')), '')
    summary = next((l[1:].strip() for l in src.splitlines() if l.startswith('>')), '')
    return title.replace('`', ''), summary


def _markdown_links(text: str) -> list[str]:
    return [m for m in re.findall(r'\]\(([^)\s]+)\)', text)]


def _is_local(href: str) -> bool:
    return not (re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', href) or href.startswith(('#', '/')))


def markdown_pages(repo: Path = ROOT) -> list[Path]:
    "README.md, figures/README.md where it exists, and every .md in the checkout that these link to (transitively)."
    todo = [repo / 'README.md'] + ([repo / 'figures' / 'README.md'] if (repo / 'figures' / 'README.md').exists() else [])
    seen: list[Path] = []
    while todo:
        md = todo.pop(0).resolve()
        if md in seen or not md.is_file():
            continue
        seen.append(md)
        for href in _markdown_links(md.read_text(encoding='utf-8')):
            target = (md.parent / href.split('#')[0]).resolve()
            if _is_local(href) and target.suffix == '.md' and target.is_relative_to(repo.resolve()):
                todo.append(target)
    return seen


def rebase_images(text: str, src_dir: Path, repo: Path) -> str:
    """Markdown and <img> image paths made relative to the checkout's root instead of the file's own folder: nbconvert
    embeds only images under the folder it is given, and a chapter's figures are in ../figures/."""
    def fix(path: str) -> str:
        if not _is_local(path):
            return path
        target = (src_dir / path).resolve()
        return target.relative_to(repo).as_posix() if target.is_relative_to(repo) else path
    text = re.sub(r'(!\[[^\]]*\]\()([^)\s]+)', lambda m: m.group(1) + fix(m.group(2)), text)
    return re.sub(r'(<img\b[^>]*?\bsrc=")([^"]+)', lambda m: m.group(1) + fix(m.group(2)), text)


class Site:
    "Where each source (notebook or markdown) lands in the output folder, and links rewritten between them."

    def __init__(self, repo: Path, out: Path):
        self.repo, self.out = repo.resolve(), out.resolve()
        self.nbs = chapters(repo)
        self.mds = markdown_pages(repo)
        self.dest: dict[Path, Path] = {nb.resolve(): self.out / page_name(nb) for nb in self.nbs}
        for md in self.mds:
            rel = md.relative_to(self.repo)
            self.dest[md] = self.out / rel.with_suffix('.html')
        self.broken: list[str] = []
        self.mathjax: Path | None = None

    def rewrite_links(self, body: str, src: Path, page: Path) -> str:
        "Relative hrefs of a page made from `src`: to the rendered page where there is one, else to the checkout's file."
        def fix(m):
            href = html.unescape(m.group(2))
            if not _is_local(href):
                return m.group(0)
            path, _, frag = href.partition('#')
            target = (src.parent / path).resolve()
            if target in self.dest:
                new = os.path.relpath(self.dest[target], page.parent)
            elif target.exists():
                new = os.path.relpath(target, page.parent) + ('/' if target.is_dir() else '')
            else:
                self.broken.append(f'{src.relative_to(self.repo)}: {href}')
                return m.group(0)
            return f'{m.group(1)}"{html.escape(new + ("#" + frag if frag else ""))}"'
        return re.sub(r'(<a\s[^>]*?href=)"([^"]*)"', fix, body)


def _nav(site: Site, order: list[Path], i: int, page: Path) -> str:
    rel = lambda p: html.escape(os.path.relpath(site.dest[p], page.parent))
    parts = [f'<a href="{html.escape(os.path.relpath(site.out / "index.html", page.parent))}">contents</a>']
    if i > 0:
        parts.append(f'<a href="{rel(order[i - 1])}">&larr; {html.escape(order[i - 1].stem)}</a>')
    if i + 1 < len(order):
        parts.append(f'<a href="{rel(order[i + 1])}">{html.escape(order[i + 1].stem)} &rarr;</a>')
    return ('<nav class="chirploc-nav" style="font-family:sans-serif;padding:6px 12px;border-bottom:1px solid #ccc;'
            'background:#f7f7f7">' + ' &middot; '.join(parts) + '</nav>')


# a readable line length; nbconvert's lab page otherwise runs prose across the whole window
STYLE = '<style>.jp-Notebook{max-width:1100px;margin:0 auto}</style>'


def _with_nav(body: str, nav: str) -> str:
    body = body.replace('</head>', STYLE + '</head>', 1)
    return re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav, body, count=1)


_EXPORTER = None


def exporter():
    "One nbconvert exporter per process: the lab template, images embedded, no prompts."
    global _EXPORTER
    if _EXPORTER is None:
        from nbconvert import HTMLExporter
        # execution counts are cleared by nbdev_clean: no empty `In [ ]:` prompts. No HTML sanitizing (bleach, 40% of
        # the build's time): the pages are this project's own committed notebooks, as Quarto would render them (the
        # sanitized pages were byte-identical when this was written)
        _EXPORTER = HTMLExporter(template_name='lab', embed_images=True, exclude_input_prompt=True,
                                 exclude_output_prompt=True, filters={'clean_html': lambda html: html})
    return _EXPORTER


def _notebook(src: Path):
    import nbformat
    if src.suffix == '.ipynb':
        return nbformat.read(src, as_version=4)
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(src.read_text(encoding='utf-8'))])


def _title(src: Path, nb, repo: Path) -> tuple[str, str]:
    if src.suffix == '.ipynb':
        t, s = title_and_summary(nb.cells)
        return t or src.stem, s
    text = nb.cells[0].source
    first = next((l[2:].strip() for l in text.splitlines() if l.startswith('# ')), str(src.relative_to(repo)))
    return first.replace('`', ''), ''


MATHJAX_CDN = re.compile(r'https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*')


def local_mathjax(out: Path) -> Path | None:
    """MathJax 2 copied into the docs (from the jupyter-server-mathjax package of the dev extra), so that the chapters'
    formulas typeset offline too. None where it is not installed: the pages then load it from its CDN, online only."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / 'static'
    shutil.copytree(static, out / 'mathjax', ignore=shutil.ignore_patterns('localization'))
    return out / 'mathjax' / 'MathJax.js'


def render_page(site: Site, order: list[Path], i: int) -> list[str]:
    "Write the page of `order[i]`; returns the links in it to missing files."
    src = order[i]
    nb = _notebook(src)
    page = site.dest[src]
    page.parent.mkdir(parents=True, exist_ok=True)
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            cell.source = rebase_images(cell.source, src.parent, site.repo)
    body, _ = exporter().from_notebook_node(
        nb, resources={'metadata': {'path': str(site.repo), 'name': _title(src, nb, site.repo)[0]}})
    site.broken = []
    body = site.rewrite_links(body, src, page)
    if site.mathjax:
        url = os.path.relpath(site.mathjax, page.parent) + '?config=TeX-AMS-MML_HTMLorMML-full,Safe'
        body = MATHJAX_CDN.sub(url, body)
    page.write_text(_with_nav(body, _nav(site, order, i, page)), encoding='utf-8')
    return site.broken


def build(out: Path | str = ROOT / '_docs', repo: Path | str = ROOT, log=print, workers: int | None = None) -> Path:
    "Render the docs into `out` (emptied first), pages in `workers` processes (default: 2 or the CPUs, if fewer)."
    from concurrent.futures import ProcessPoolExecutor
    repo, out = Path(repo).resolve(), Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    site = Site(repo, out)
    site.mathjax = local_mathjax(out)
    if site.mathjax is None:
        log('note: jupyter-server-mathjax is not installed: formulas typeset only online (MathJax from its CDN)')
    order = [p.resolve() for p in site.mds[:1] + site.nbs + site.mds[1:]]
    titles = {src: _title(src, _notebook(src), repo) for src in order}
    workers = workers or min(2, os.cpu_count() or 1)
    # the biggest pages first, so that the two processes finish together
    jobs = sorted(range(len(order)), key=lambda i: -order[i].stat().st_size)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            broken = list(pool.map(render_page, [site] * len(jobs), [order] * len(jobs), jobs))
    else:
        broken = [render_page(site, order, i) for i in jobs]
    site.broken = [b for bs in broken for b in bs]

    # the contents page, rendered by the same exporter so it looks like the rest
    settings = (repo / 'settings.ini').read_text(encoding='utf-8') if (repo / 'settings.ini').exists() else ''
    desc = next((l.split('=', 1)[1].strip() for l in settings.splitlines() if l.startswith('description')), '')
    link = lambda p: os.path.relpath(site.dest[p], out)
    lines = ['# chirploc: documentation', '', f'> {desc}' if desc else '', '',
             'Static pages of the README and of every chapter as committed, executed: open them in any browser, no '
             'Jupyter needed. Rebuilt by `bash .ci/docs`.', '',
             f'- [README]({link(order[0])}): the front door: what chirploc does, how to install it and what it found.',
             '', '## Chapters', '']
    for n, nb in enumerate(site.nbs, 1):
        t, s = titles[nb.resolve()]
        lines.append(f'{n}. [`{nb.stem}`: {t}]({link(nb.resolve())})' + (f': {s}' if s else ''))
    if site.mds[1:]:
        lines += ['', '## Records', '']
        for md in site.mds[1:]:
            rel, t = md.relative_to(repo), titles[md][0]
            lines.append(f'- [`{rel}`]({link(md)})' + (f': {t}' if t != str(rel) else ''))
    index = out / 'index.html'
    import nbformat
    body, _ = exporter().from_notebook_node(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('\n'.join(lines))]),
        resources={'metadata': {'path': str(repo), 'name': 'chirploc'}})
    index.write_text(body.replace('</head>', STYLE + '</head>', 1), encoding='utf-8')
    (out / 'pages.json').write_text(json.dumps(
        {'pages': [str(site.dest[p].relative_to(out)) for p in order], 'broken_links': site.broken}, indent=1))
    for b in site.broken:
        log(f'warning: link to a missing file: {b}')
    return index


# a Python traceback, an escape character, or ANSI colour codes that lost their escape (`[0;31m`, `[0m`)
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|\x1b|\[(?:\d{1,3};)+\d{1,3}m|\[0m')


def page_text(body: str) -> str:
    "What a reader sees of a page: tags, styles and scripts dropped, entities unescaped."
    body = re.sub(r'<(style|script)\b.*?</\1>', ' ', body, flags=re.S | re.I)
    return html.unescape(re.sub(r'<[^>]+>', '', body))


def problems(page: Path) -> list[str]:
    """What is wrong with one rendered page, as `PAGE: problem` lines: a raw traceback or ANSI escape codes in what it
    shows (an error output committed in a chapter), or an <img> whose source is neither embedded nor an existing file, or a local <script> (MathJax) that is
    not there."""
    body = page.read_text(encoding='utf-8')
    found = []
    for m in TRACEBACK.finditer(page_text(body)):
        found.append(f'{page.name}: shows a raw traceback or ANSI escape codes: {m.group(0)!r}')
        break
    for src in re.findall(r'<img\b[^>]*?\bsrc="([^"]*)"', body, flags=re.I):
        src = html.unescape(src)
        if src.startswith('data:'):
            if len(src.partition(',')[2]) < 100:
                found.append(f'{page.name}: an <img> with an empty embedded image')
        elif not _is_local(src) or not (page.parent / src.split('#')[0]).is_file():
            found.append(f'{page.name}: an <img> whose source is not a file next to the page: {src[:120]}')
    for src in re.findall(r'<script\b[^>]*?\bsrc="([^"]*)"', body, flags=re.I):
        src = html.unescape(src).split('?')[0]
        if _is_local(src) and not (page.parent / src).is_file():
            found.append(f'{page.name}: a <script> whose source is not there: {src}')
    return found


if __name__ == '__main__':
    t0 = time.time()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / '_docs'
    index = build(out)
    n = len(json.loads((index.parent / 'pages.json').read_text())['pages'])
    print(f'wrote {n} pages and the contents to {index.parent} in {time.time() - t0:.0f} s (open {index})')
    bad = [p for page in sorted(index.parent.rglob('*.html')) for p in problems(page)]
    for p in bad:
        print(f'FAIL: {p}')
    sys.exit(1 if bad else 0)
