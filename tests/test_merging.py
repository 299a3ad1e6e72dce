"""Token merging on the course's compact transformer: r = 0 is the model, merged sizes
keep every original token, and the right number of tokens reaches the head."""

import pytest
import torch

from lwt import merging, models


def cct():
    torch.manual_seed(0)
    return models.create_model("cct4").eval()


def test_r_zero_is_the_model_itself():
    model, x = cct(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(merging.TokenMerging(model, 0)(x), model(x), atol=1e-5)


def test_merging_by_hand_keeps_mass_and_merges_the_most_similar():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [5.0, 5.0]]])
    keys = x.clone()  # A = tokens 0, 2; B = tokens 1, 3; token 0 ~ token 1 best
    size = torch.ones(1, 4, 1)
    out, s = merging.bipartite_merge(x, keys, size, 1)
    assert out.shape == (1, 3, 2) and s.sum() == 4
    assert torch.allclose(
        out[0, 1], torch.tensor([1.0, 0.05])
    )  # mean of tokens 0 and 1
    assert s[0, :, 0].tolist() == [1.0, 2.0, 1.0]


def test_tokens_reaching_the_head_and_sizes():
    model, x = cct(), torch.randn(2, 3, 32, 32)
    seen = {}
    head = model.head

    def spy(t, size):
        seen["tokens"], seen["size"] = t.shape[1], size
        return head(t, size)

    model.head = spy
    with torch.no_grad():
        out = merging.TokenMerging(model, 8)(x)
    assert out.shape == (2, 10) and seen["tokens"] == 64 - 4 * 8
    assert torch.allclose(seen["size"].sum(1), torch.full((2, 1), 64.0))
    with pytest.raises(ValueError, match="r must"):
        merging.TokenMerging(model, -1)
