import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two (no spin-waiting)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
