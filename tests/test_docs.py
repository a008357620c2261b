"""The static docs (`bash .ci/docs`) as a reader gets them: every page built into a temporary folder, no page showing a
raw traceback or an image that is not there, links between pages resolving, and the contents page and one chapter
looked at in headless Chromium (skipped, with the reason, where no Chromium is installed)."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('build_docs', ROOT / '.ci' / 'build_docs.py')
docs = sys.modules['build_docs'] = importlib.util.module_from_spec(_spec)   # importable by its worker processes
_spec.loader.exec_module(docs)

# Debian's `chromium` or `chromium-headless-shell` (apt-get install -y chromium-headless-shell)
CHROMIUM = next((shutil.which(n) for n in ('chromium-headless-shell', 'chromium', 'chromium-browser', 'google-chrome')
                 if shutil.which(n)), None)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The docs built once for this module (about 20 s on 2 cores)."
    out = tmp_path_factory.mktemp('docs') / '_docs'
    docs.build(out, ROOT, log=lambda *a: None)
    return out


def test_pages_in_reading_order(site):
    pages = json.loads((site / 'pages.json').read_text())['pages']
    chapters = docs.chapters(ROOT)
    names = [docs.page_name(nb) for nb in chapters]
    assert pages[0] == 'README.html' and pages[1:1 + len(chapters)] == names
    index = (site / 'index.html').read_text()
    # the contents page links every chapter, in order, with the title of its first heading
    hrefs = [h for h in re.findall(r'href="([^"#]+\.html)"', index) if h in names]
    assert hrefs == names
    for nb in chapters:
        title = docs.title_and_summary(nbformat.read(nb, as_version=4).cells)[0]
        assert title and docs.html.escape(title, quote=False) in index, nb.name


def test_no_traceback_and_every_image_there(site):
    bad = [p for page in sorted(site.rglob('*.html')) for p in docs.problems(page)]
    assert not bad, '\n'.join(bad)
    # and at the source: no committed chapter holds an error output
    errors = [nb.name for nb in docs.chapters(ROOT)
              for c in nbformat.read(nb, as_version=4).cells for o in c.get('outputs', []) if o.output_type == 'error']
    assert not errors, f'chapters committed with an error output: {errors}'


def test_links_resolve(site):
    assert json.loads((site / 'pages.json').read_text())['broken_links'] == []
    for page in site.rglob('*.html'):
        for href in re.findall(r'<a\s[^>]*?href="([^"]*)"', page.read_text()):
            href = docs.html.unescape(href).split('#')[0]
            if href and docs._is_local(href):
                assert (page.parent / href).exists(), f'{page.relative_to(site)} links to a missing {href}'
    # formulas typeset offline where the dev extra's MathJax is installed (the <script> is checked by problems())
    if importlib.util.find_spec('jupyter_server_mathjax'):
        assert 'src="mathjax/MathJax.js?' in (site / '01_generate.html').read_text()
    # a chapter's link to another chapter goes to its page
    overview = (site / 'overview.html').read_text()
    assert 'href="04_train.html"' in overview and '04_train.ipynb"' not in overview


def test_problems_are_seen(tmp_path):
    "The check itself fails on what it is there for, rendered by the same exporter: a traceback, a missing image."
    from nbconvert import HTMLExporter
    err = nbformat.v4.new_output('error', ename='ValueError', evalue='bad', traceback=[
        '\x1b[0;31m---------------------------------------------------------------------------\x1b[0m',
        '\x1b[0;31mValueError\x1b[0m                                Traceback (most recent call last)',
        '\x1b[0;31mValueError\x1b[0m: bad'])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1/0', outputs=[err]),
                                         nbformat.v4.new_markdown_cell('![a figure](gone/missing.png)')])
    body, _ = HTMLExporter(template_name='lab', embed_images=True).from_notebook_node(
        nb, resources={'metadata': {'path': str(tmp_path), 'name': 'x'}})
    (tmp_path / 'x.html').write_text(body)
    found = docs.problems(tmp_path / 'x.html')
    assert any('traceback' in p for p in found) and any('missing.png' in p for p in found), found
    (tmp_path / 'y.html').write_text('<html><body><pre>[0;31mValueError[0m: bad</pre></body></html>')
    assert docs.problems(tmp_path / 'y.html')
    (tmp_path / 'z.html').write_text('<html><body><p>A list [1, 2] and 10 minutes.</p></body></html>')
    assert docs.problems(tmp_path / 'z.html') == []


def screenshot(page: Path, png: Path, size=(1200, 1400)) -> Image.Image:
    subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                    f'--user-data-dir={png.parent / "profile"}', f'--window-size={size[0]},{size[1]}',
                    f'--screenshot={png}', page.as_uri()], capture_output=True, timeout=60, check=True)
    assert png.is_file() and png.stat().st_size > 0, f'no screenshot of {page.name}'
    return Image.open(png).convert('RGB')


@pytest.mark.skipif(CHROMIUM is None, reason='no Chromium: apt-get install -y chromium-headless-shell (Debian)')
@pytest.mark.parametrize('name', ['index.html', '07_reproduce.html'])
def test_screenshot_not_blank(site, tmp_path, name):
    img = np.asarray(screenshot(site / name, tmp_path / f'{name}.png'))
    assert img.shape[:2] == (1400, 1200)
    ink = (img.min(axis=2) < 200).mean()             # text and figures, against the white page
    assert ink > 0.01, f'{name} renders (nearly) blank: {ink:.2%} of its pixels are ink'
    if name != 'index.html':                          # a chapter with figures shows colour, not only black text
        assert (np.ptp(img.astype(int), axis=2) > 60).mean() > 0.001, f'{name} shows no coloured pixels'
