"""Helpers that drive the authors' reference generator (`chirp-spectrogram-generator==0.1.6`, a development requirement).

They live with the tests, not in the package: chirploc itself never needs the reference. The tests import them
(`from reference import ...`, pytest puts this folder on sys.path) and so do the notebooks' worked examples
(`sys.path.insert(0, '../tests')`).
"""
import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from chirploc.generate import LABEL_COLUMNS, GeneratorConfig


def reference_folder(out, n: int, seed: int = 0) -> Path:
    "A ChirpLoc100K folder of `n` figures made by the reference's own `generate_dataset` after `np.random.seed(seed)`."
    from chirp_spectrogram_generator import SpectrogramGenerator
    out = Path(out)
    np.random.seed(seed)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')  # the reference's unused waveform divides by zero now and then
        SpectrogramGenerator(output_dir=str(out)).generate_dataset(n)
    return out


def reference_samples(n: int, seed: int = 0, cfg: GeneratorConfig | None = None):
    "`n` spectrograms from the reference package (its global-RNG draws after `np.random.seed(seed)`) and their labels."
    from chirp_spectrogram_generator import SpectrogramGenerator
    cfg = cfg or GeneratorConfig()
    g = SpectrogramGenerator(duration=cfg.duration, max_chirp_duration=cfg.max_chirp_duration, num_time_bins=cfg.num_time_bins,
                             num_freq_bins=cfg.num_freq_bins, max_frequency=cfg.max_frequency,
                             max_chirp_band=cfg.max_chirp_band, output_dir=tempfile.gettempdir())
    np.random.seed(seed)
    mats, rows = [], []
    for _ in range(n):  # the draws of the reference's generate_dataset, in its order
        t0 = np.random.uniform(0, cfg.duration - cfg.max_chirp_duration)
        dt = np.random.uniform(1.0, cfg.max_chirp_duration)
        f0 = np.random.uniform(0, cfg.max_frequency)
        f1 = np.clip(f0 + np.random.uniform(-cfg.max_chirp_band, cfg.max_chirp_band), 0, cfg.max_frequency)
        kind = np.random.choice(['linear', 'exponential'])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            mats.append(g.create_spectrogram_with_chirp(t0, f0, f1, dt, kind))
        rows.append((t0, f0, f1, dt, str(kind)))
    return np.stack(mats), pd.DataFrame(rows, columns=LABEL_COLUMNS)


def reference_figure(S: np.ndarray, index: int = 1, chirp_type: str = 'linear', cfg: GeneratorConfig | None = None,
                     path=None, dpi=None):
    "Draw `S` with pyplot exactly as the reference's `generate_dataset` does; save to `path` (PNG) or return the RGBA image."
    import matplotlib.pyplot as plt
    cfg = cfg or GeneratorConfig()
    plt.imshow(S, aspect='auto', origin='lower', cmap='viridis', extent=[0, cfg.duration, 0, cfg.max_frequency])
    plt.xlabel("Time (s)")
    plt.ylabel("Frequency (Hz)")
    plt.title(f"Synthetic Spectrogram {index} ({chirp_type} chirp)")
    plt.colorbar(label="Intensity")
    buf = path if path is not None else io.BytesIO()
    plt.savefig(buf, **({} if dpi is None else dict(dpi=dpi)))
    plt.close()
    return path if path is not None else Image.open(buf)
