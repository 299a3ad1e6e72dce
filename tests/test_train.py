import pytest
import torch
from torch import nn

from lwt import train


def blobs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.3 + (y[:, None] * 2 - 1) * 1.5
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


class Constant(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.cls, self.p = cls, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.cls), 3).float()


def test_evaluate_known_answer():
    batches = [
        (torch.zeros(4, 1), torch.tensor([0, 1, 1, 2])),
        (torch.zeros(2, 1), torch.tensor([1, 1])),
    ]
    assert train.evaluate(Constant(1), batches) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="no examples"):
        train.evaluate(Constant(1), [])


def test_train_learns_and_calls_back():
    train.set_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    data = blobs()
    steps = []
    opt, sched = train.sgd_onecycle(model, 3 * len(data), lr=0.1, weight_decay=0)
    hist = train.train(
        model,
        data,
        3,
        opt,
        sched,
        test_loader=data,
        device="cpu",
        callback=lambda step, m: steps.append(step),
        quiet=True,
    )
    assert steps == list(range(1, 3 * len(data) + 1))
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["test_acc"] > 0.95 and hist[-1]["loss"] < hist[0]["loss"]


def test_seeded_training_is_reproducible():
    def run():
        train.set_seed(1)
        model = nn.Linear(2, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train.train(model, blobs(), 1, opt, device="cpu", quiet=True)
        return model.weight.detach().clone()

    assert torch.equal(run(), run())


def test_bad_arguments():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        train.train(model, blobs(), -1, opt)
    with pytest.raises(ValueError, match="positive"):
        train.sgd_onecycle(model, 0, 0.1, 0.0)


def test_quick_flag(monkeypatch):
    monkeypatch.setenv("LWT_QUICK", "1")
    assert train.is_quick()
    monkeypatch.setenv("LWT_QUICK", "0")
    assert not train.is_quick()
    assert train.default_device().type in ("cpu", "cuda", "mps")


def test_onecycle_schedule_values():
    model = nn.Linear(2, 2)
    opt, sched = train.sgd_onecycle(model, 100, lr=0.4, weight_decay=0, pct_start=0.2)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert max(lrs) == pytest.approx(0.4, rel=1e-3) and lrs.index(max(lrs)) in (19, 20)
    assert lrs[-1] < 1e-3


def test_finetune_takes_the_device_and_leaves_the_model_there():
    """Issue 29: finetune had no device argument (it always took default_device)."""
    m = torch.nn.Linear(4, 2)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    train.finetune(m, batches, epochs=1, lr=0.01, device="cpu")
    assert next(m.parameters()).device.type == "cpu"
    if torch.cuda.is_available():  # the GPU rule, where there is one
        train.finetune(m, batches, epochs=1, lr=0.01, device="cuda")
        assert next(m.parameters()).device.type == "cuda"
        assert 0 <= train.evaluate(m, batches) <= 1  # runs where the model is
