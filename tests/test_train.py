import math

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


def test_bf16_precision_trains_and_rejects_others():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    hist = train.train(model, blobs(), 3, torch.optim.SGD(model.parameters(), lr=0.1),
                       device="cpu", quiet=True, precision="bf16")  # fmt: skip
    assert hist[-1]["train_acc"] > 0.9 and model.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        train.train(model, blobs(), 1, torch.optim.SGD(model.parameters(), lr=0.1),
                    device="cpu", precision="fp16")  # fmt: skip


def test_adamw_cosine_warms_up_then_decays_and_skips_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    opt, sched = train.adamw_cosine(model, 10, lr=1.0, weight_decay=0.1, warmup=2)
    rates = []
    for _ in range(10):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert decayed == {id(model[0].weight)}  # not the bias, not the LayerNorm
    assert opt.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="warmup"):
        train.adamw_cosine(model, 10, lr=1.0, weight_decay=0.1, warmup=10)


def test_train_resumable_equals_an_uninterrupted_run(tmp_path):
    from lwt import data

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    d = data.ImageData(images, torch.arange(64) % 10, "cifar10")

    def run(epochs, state):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(3 * 32 * 32, 10))
        loader = data.BatchLoader(d, 16, shuffle=True, augment=True, seed=2)
        opt, sched = train.adamw_cosine(model, 4 * len(loader), lr=1e-3,
                                        weight_decay=0.05, warmup=2)  # fmt: skip
        hist = train.train_resumable(model, loader, epochs, opt, sched, state=state,
                                     device="cpu")  # fmt: skip
        return model, hist

    whole, h1 = run(4, None)
    run(2, tmp_path / "s.pt")  # "stopped" after 2 of 4 epochs (the file holds 2)
    torch.manual_seed(123)  # whatever ran in between
    resumed, h2 = run(4, tmp_path / "s.pt")
    assert [r["epoch"] for r in h2] == [1, 2, 3, 4]
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r["loss"] for r in h1] == pytest.approx([r["loss"] for r in h2], abs=0)
