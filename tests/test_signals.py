"""The real-signal path: clear errors for unusable input, and chirps found in absolute time."""
import numpy as np
import pytest

from chirploc.signals import chirp_waveform, embed, localize_signal, pink_noise, signal_spectrogram


def test_bad_signals_are_named():
    with pytest.raises(ValueError, match='shorter than one window'):
        localize_signal(np.zeros(250 * 30), 250.0)
    with pytest.raises(ValueError, match=r'Nyquist 60.0 Hz'):
        signal_spectrogram(np.zeros(120 * 60), 120.0)
    with pytest.raises(ValueError, match='shorter than the 60.0 s window'):
        signal_spectrogram(np.zeros(250 * 20), 250.0)
    with pytest.raises(ValueError, match='does not fit'):
        chirp_waveform(55, 10, 10, 20)
    with pytest.raises(ValueError, match='Nyquist'):
        chirp_waveform(5, 10, 10, 130, fs=250.0)
    with pytest.raises(ValueError, match='linear or exponential'):
        chirp_waveform(5, 10, 10, 20, kind='cubic')


def test_chirp_found_in_absolute_time_with_the_tracker_and_the_model():
    from chirploc.evaluate import load_localizer
    fs = 250.0
    x = embed(chirp_waveform(130, 10, 25, 50, 'exponential', fs, window=200), -5, np.random.default_rng(7), fs=fs)
    # the tracker is precise on signal spectrograms; the model trained on synthetic images less so (08_signals)
    for localizer, dt, df in ((None, 2, 3), (load_localizer(), 5, 8)):
        found = localize_signal(x, fs, localizer)
        assert list(found.window_start) == [0.0, 30.0, 60.0, 90.0, 120.0, 140.0]  # the last window ends with the recording
        best = found.loc[found.strength.idxmax()]
        assert abs(best.start_s - 130) < dt and abs(best.Chirp_Start_Freq - 25) < df and abs(best.Chirp_End_Freq - 50) < df
        if localizer is None: tracked = found
    quiet = localize_signal(pink_noise(int(200 * fs), np.random.default_rng(8)), fs)
    assert quiet.strength.max() < tracked.strength.max()  # noise alone: no window as strong as the chirp's
