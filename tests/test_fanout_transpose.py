"""Transposed convolutions: fanout against a brute-force loop, and SynapticOperations on them.

In a transposed convolution, input position ``i`` and kernel tap ``k`` write output position
``i * stride - padding + k * dilation``. The output has
``(n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1`` positions
along each dimension; a write that lands outside them (cropped by ``padding``) is no
synapse. The reference counts, for every input element, the (tap, output channel) pairs
whose write lands inside, with a nonzero weight if zero weights are skipped.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from snnmetrics import SynapticOperations
from snnmetrics.functional import fanout

TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def brute_transposed_fanout(conv: nn.Module, feature_shape: tuple[int, ...], skip_zero: bool):
    channels, *size = feature_shape
    n = len(size)
    kernel, stride, dilation = conv.kernel_size, conv.stride, conv.dilation
    padding, output_padding = conv.padding, conv.output_padding
    out = [
        (size[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1)
        + output_padding[d] + 1
        for d in range(n)
    ]
    cout_g = conv.out_channels // conv.groups
    cin_g = channels // conv.groups
    weight = conv.weight.tolist()  # [in_channels, out_channels / groups, *kernel]
    result = torch.zeros(feature_shape, dtype=torch.int64)
    for ci in range(channels):
        for i in itertools.product(*(range(s) for s in size)):
            count = 0
            for k in itertools.product(*(range(s) for s in kernel)):
                o = [i[d] * stride[d] - padding[d] + k[d] * dilation[d] for d in range(n)]
                if not all(0 <= o[d] < out[d] for d in range(n)):
                    continue
                for co in range(cout_g):  # the output channels of ci's group
                    w = weight[ci][co]
                    for index in k:
                        w = w[index]
                    if not skip_zero or w != 0:
                        count += 1
            result[(ci, *i)] = count
    assert cin_g * conv.groups == channels
    return result


CASES = [
    # (n, cin, cout, kernel, spatial size, kwargs)
    (1, 1, 1, 3, (5,), {}),
    (1, 2, 3, 3, (6,), {"stride": 2}),
    (1, 2, 2, 4, (5,), {"stride": 2, "padding": 1}),
    (1, 3, 2, 3, (7,), {"stride": 3, "padding": 2, "output_padding": 2}),
    (1, 4, 6, 3, (6,), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    (1, 6, 3, 2, (5,), {"stride": 2, "output_padding": 1, "groups": 3}),
    (2, 1, 2, 3, (4, 5), {"padding": 1}),
    (2, 2, 3, (3, 2), (4, 3), {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0)}),
    (2, 4, 4, 3, (4, 4), {"stride": 2, "padding": (2, 1), "dilation": (1, 2), "groups": 2}),
    (2, 2, 2, 4, (3, 4), {"stride": 3, "padding": 2, "output_padding": (2, 1)}),
    (2, 4, 8, 3, (3, 3), {"groups": 4, "stride": 2}),
    (3, 1, 2, 2, (2, 3, 2), {"stride": 2}),
    (3, 2, 2, 3, (3, 2, 3), {"padding": 1, "stride": 2, "groups": 2, "output_padding": 1}),
    (3, 2, 1, (2, 3, 1), (3, 3, 2), {"dilation": (2, 1, 1), "padding": (1, 1, 0)}),
]


def make_transposed(n, cin, cout, kernel, zero_fraction=0.4, seed=0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    conv = TRANSPOSED[n](cin, cout, kernel, **kwargs)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) >= zero_fraction).float())
        conv.weight.view(-1)[0] = 0.0  # at least one zero weight, however small the kernel
    return conv


def test_transposed_conv1d_by_hand():
    # stride 2, kernel 3: input i writes outputs 2i, 2i+1, 2i+2 of 7; padding 1 crops the
    # first and the last output, so inputs 0 and 2 lose one write each
    conv = nn.ConvTranspose1d(1, 1, kernel_size=3, stride=2)
    assert fanout(conv, (1, 3)).tolist() == [[3, 3, 3]]
    cropped = nn.ConvTranspose1d(1, 1, kernel_size=3, stride=2, padding=1)
    assert fanout(cropped, (1, 3)).tolist() == [[2, 3, 2]]
    # output_padding adds an 8th output (index 6 after cropping): input 2 writes it again
    padded = nn.ConvTranspose1d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1)
    assert fanout(padded, (1, 3)).tolist() == [[2, 3, 3]]


@pytest.mark.parametrize("skip_zero", [False, True])
@pytest.mark.parametrize(("n", "cin", "cout", "kernel", "size", "kwargs"), CASES)
def test_transposed_conv_matches_brute_force(n, cin, cout, kernel, size, kwargs, skip_zero):
    conv = make_transposed(n, cin, cout, kernel, seed=n + len(size), **kwargs)
    assert (conv.weight == 0).any() and (conv.weight != 0).any()
    shape = (cin, *size)
    got = fanout(conv, shape, skip_zero_weights=skip_zero)
    assert got.shape == shape
    assert torch.equal(got, brute_transposed_fanout(conv, shape, skip_zero))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_synaptic_operations_on_transposed_conv(n):
    # effective = sum over nonzero inputs of the nonzero-weight fanout; dense = the sum of
    # the structural fanout per sample, both from the brute-force map
    conv = make_transposed(n, 4, 2, 3, seed=n, stride=2, padding=1, output_padding=1, groups=2)
    size = {1: (6,), 2: (4, 5), 3: (3, 4, 3)}[n]
    gen = torch.Generator().manual_seed(n)
    x = (torch.rand(3, 2, 4, *size, generator=gen) < 0.4).float()  # [B, T, C, ...]
    effective_map = brute_transposed_fanout(conv, (4, *size), skip_zero=True)
    structural_map = brute_transposed_fanout(conv, (4, *size), skip_zero=False)
    with SynapticOperations(conv) as synops:
        for t in range(x.shape[1]):
            conv(x[:, t])
        synops.update()
        result = synops.compute()
    nonzero = (x != 0).sum((0, 1))
    assert float(result["effective_acs"]) == int((nonzero * effective_map).sum()) / 3
    assert float(result["effective_macs"]) == 0.0
    assert float(result["dense"]) == 2 * int(structural_map.sum())


def test_transposed_conv_graded_input_is_mac():
    conv = nn.ConvTranspose2d(1, 1, 2, stride=2, bias=False)
    x = torch.tensor([[[[0.5, 0.0], [0.0, 2.0]]]])
    with SynapticOperations(conv) as synops:
        conv(x)
        synops.update()
        result = synops.compute()
    assert float(result["effective_macs"]) == 2 * 4  # two nonzero inputs, 4 taps each
    assert float(result["effective_acs"]) == 0.0
