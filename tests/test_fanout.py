"""`snnmetrics.functional.fanout` against a brute-force loop over every output and tap.

The reference enumerates, for every output position, every kernel tap and every
(input channel, output channel) pair of a group, the input index the tap reads, and counts
a synapse on that input element if the index lands on a real input (zero padding reads
nothing; reflect/replicate/circular padding reads the real element it copies).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from snnmetrics.functional import fanout

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}

# torch warns that "same" with an even kernel pads a copy of the input; that is what we test
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


# ----------------------------------------------------------------------------- reference


def _pads(conv: nn.Module, dim: int) -> tuple[int, int]:
    """(left, right) padding of spatial dimension ``dim`` as torch applies it."""
    k, d = conv.kernel_size[dim], conv.dilation[dim]
    if conv.padding == "same":
        total = d * (k - 1)
        return total // 2, total - total // 2
    if conv.padding == "valid":
        return 0, 0
    p = conv.padding[dim]
    return p, p


def _source(p: int, n: int, mode: str) -> int | None:
    """The real input index that padded position ``p`` (relative to the real input) reads."""
    if 0 <= p < n:
        return p
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -p if p < 0 else 2 * (n - 1) - p
    if mode == "replicate":
        return min(max(p, 0), n - 1)
    if mode == "circular":
        return p % n
    raise AssertionError(mode)


def brute_conv_fanout(conv: nn.Module, feature_shape: tuple[int, ...], skip_zero: bool):
    channels, *size = feature_shape
    n = len(size)
    kernel, stride, dilation = conv.kernel_size, conv.stride, conv.dilation
    pads = [_pads(conv, i) for i in range(n)]
    out = [
        (size[i] + pads[i][0] + pads[i][1] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(n)
    ]
    groups = conv.groups
    cin_g, cout_g = channels // groups, conv.out_channels // groups
    nonzero = {tuple(ix) for ix in (conv.weight != 0).nonzero().tolist()}
    counts: dict[tuple[int, ...], int] = {}
    for o in itertools.product(*(range(s) for s in out)):
        for k in itertools.product(*(range(s) for s in kernel)):
            src = []
            for i in range(n):
                q = _source(
                    o[i] * stride[i] - pads[i][0] + k[i] * dilation[i], size[i], conv.padding_mode
                )
                if q is None:
                    break
                src.append(q)
            else:
                for co in range(conv.out_channels):
                    group = co // cout_g
                    for cl in range(cin_g):
                        if skip_zero and (co, cl, *k) not in nonzero:
                            continue
                        key = (group * cin_g + cl, *src)
                        counts[key] = counts.get(key, 0) + 1
    result = torch.zeros(feature_shape, dtype=torch.int64)
    for key, value in counts.items():
        result[key] = value
    return result


def make_conv(
    n: int, cin: int, cout: int, kernel, zero_fraction: float = 0.0, seed: int = 0, **kwargs
) -> nn.Module:
    torch.manual_seed(seed)
    conv = CONV[n](cin, cout, kernel, **kwargs)
    if zero_fraction:
        with torch.no_grad():
            conv.weight.mul_((torch.rand_like(conv.weight) >= zero_fraction).float())
    return conv


# ----------------------------------------------------------------------------- hand cases


def test_conv1d_padding_one_by_hand():
    conv = nn.Conv1d(1, 1, kernel_size=3, padding=1)
    assert fanout(conv, (1, 5)).tolist() == [[2, 3, 3, 3, 2]]


def test_conv1d_stride_two_by_hand():
    # outputs read inputs {0,1,2} and {2,3,4}
    conv = nn.Conv1d(1, 1, kernel_size=3, stride=2)
    assert fanout(conv, (1, 5)).tolist() == [[1, 1, 2, 1, 1]]


def test_conv1d_channels_by_hand():
    # 2 in, 3 out channels: every input tap reaches 3 outputs channels
    conv = nn.Conv1d(2, 3, kernel_size=2)
    assert fanout(conv, (2, 4)).tolist() == [[3, 6, 6, 3], [3, 6, 6, 3]]


def test_conv2d_padding_one_by_hand():
    conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)
    assert fanout(conv, (1, 3, 3)).tolist() == [[[4, 6, 4], [6, 9, 6], [4, 6, 4]]]


def test_conv2d_zero_weights_by_hand():
    conv = nn.Conv2d(1, 1, kernel_size=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]]))
    # outputs (0,0), (0,1), (1,0), (1,1) read inputs o + (0,0) and o + (1,1)
    assert fanout(conv, (1, 3, 3), skip_zero_weights=True).tolist() == [
        [[1, 1, 0], [1, 2, 1], [0, 1, 1]]
    ]
    assert fanout(conv, (1, 3, 3)).tolist() == [[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("zeros", [2, 3, 3, 2]),
        ("reflect", [2, 4, 4, 2]),  # o=0 reads 1,0,1; o=3 reads 2,3,2
        ("replicate", [3, 3, 3, 3]),  # o=0 reads 0,0,1; o=3 reads 2,3,3
        ("circular", [3, 3, 3, 3]),
    ],
)
def test_padding_modes_by_hand(mode, expected):
    conv = nn.Conv1d(1, 1, kernel_size=3, padding=1, padding_mode=mode)
    assert fanout(conv, (1, 4)).tolist() == [expected]


def test_linear_by_hand():
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(
            torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 3.0, 4.0], [5.0, 0.0, 0.0, 6.0]])
        )
    assert fanout(layer, (4,), skip_zero_weights=True).tolist() == [2, 0, 1, 3]
    assert fanout(layer, (4,)).tolist() == [3, 3, 3, 3]


# ----------------------------------------------------------------------------- brute force

CASES = [
    # (n, cin, cout, kernel, spatial size, kwargs)
    (1, 1, 1, 3, (7,), {}),
    (1, 2, 3, 3, (9,), {"padding": 1}),
    (1, 3, 2, 4, (11,), {"stride": 2, "padding": 2}),
    (1, 4, 6, 3, (13,), {"stride": 3, "padding": (1,), "dilation": 2, "groups": 2}),
    (1, 2, 2, 5, (8,), {"padding": "same"}),
    (1, 2, 3, 4, (9,), {"padding": "same"}),  # asymmetric "same": 1 left, 2 right
    (1, 2, 3, 4, (9,), {"padding": "same", "dilation": 2}),
    (1, 3, 3, 2, (9,), {"padding": "valid", "stride": 2}),
    (1, 6, 3, 3, (10,), {"padding": 2, "dilation": 3, "groups": 3}),
    (2, 1, 2, 3, (5, 6), {"padding": 1}),
    (2, 2, 3, (3, 2), (7, 5), {"stride": (2, 1), "padding": (1, 0)}),
    (2, 4, 4, 3, (8, 7), {"stride": 2, "padding": (2, 1), "dilation": (1, 2), "groups": 2}),
    (2, 2, 2, (4, 3), (6, 7), {"padding": "same", "dilation": (1, 2)}),
    (2, 4, 8, 3, (5, 5), {"padding": "valid", "groups": 4}),
    (2, 3, 2, 5, (7, 8), {"stride": 3, "padding": 1}),
    (2, 2, 4, 2, (6, 6), {"stride": (1, 3), "dilation": (3, 1), "padding": (0, 2)}),
    (3, 1, 2, 2, (3, 4, 3), {}),
    (3, 2, 2, 3, (4, 4, 4), {"padding": 1, "stride": 2, "groups": 2}),
    (3, 2, 1, (2, 3, 1), (4, 3, 3), {"padding": "same", "dilation": (2, 1, 1)}),
    (3, 1, 2, 3, (3, 5, 4), {"padding": (1, 0, 2), "dilation": (1, 2, 1)}),
]


@pytest.mark.parametrize("skip_zero", [False, True])
@pytest.mark.parametrize(("n", "cin", "cout", "kernel", "size", "kwargs"), CASES)
def test_conv_matches_brute_force(n, cin, cout, kernel, size, kwargs, skip_zero):
    conv = make_conv(n, cin, cout, kernel, zero_fraction=0.4, seed=len(CASES) + n, **kwargs)
    assert (conv.weight == 0).any() and (conv.weight != 0).any()
    shape = (cin, *size)
    got = fanout(conv, shape, skip_zero_weights=skip_zero)
    assert got.dtype == torch.int64
    assert got.shape == shape
    assert torch.equal(got, brute_conv_fanout(conv, shape, skip_zero))


PADDING_MODE_CASES = [
    (1, 2, 3, 3, (6,), {"padding": 1}),
    (1, 2, 2, 4, (9,), {"padding": 3, "stride": 2}),
    (1, 2, 4, 3, (8,), {"padding": 2, "dilation": 2, "groups": 2}),
    (1, 1, 2, 5, (7,), {"padding": "same"}),
    (2, 2, 2, 3, (5, 6), {"padding": (1, 2)}),
    (2, 2, 4, (3, 2), (6, 5), {"padding": (2, 1), "stride": (2, 1), "groups": 2}),
    (2, 1, 1, 3, (4, 5), {"padding": (2, 2), "dilation": (1, 2)}),
    (3, 1, 2, 3, (3, 4, 3), {"padding": 1}),
]


@pytest.mark.parametrize("skip_zero", [False, True])
@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
@pytest.mark.parametrize(("n", "cin", "cout", "kernel", "size", "kwargs"), PADDING_MODE_CASES)
def test_padding_modes_match_brute_force(n, cin, cout, kernel, size, kwargs, mode, skip_zero):
    conv = make_conv(n, cin, cout, kernel, zero_fraction=0.3, seed=7, padding_mode=mode, **kwargs)
    shape = (cin, *size)
    assert torch.equal(
        fanout(conv, shape, skip_zero_weights=skip_zero), brute_conv_fanout(conv, shape, skip_zero)
    )


def test_non_zero_padding_modes_read_every_tap():
    # every padded read is a read of a real input: the map sums to outputs x taps x channels
    for mode in ("reflect", "circular", "replicate"):
        conv = nn.Conv2d(3, 4, 3, padding=1, stride=2, padding_mode=mode)
        total = int(fanout(conv, (3, 7, 6)).sum())
        assert total == (4 * 3) * (3 * 3) * 4 * 3  # out 4x3 positions
    zero_padded = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    assert int(fanout(zero_padded, (3, 7, 6)).sum()) < 12 * 9 * 12


@pytest.mark.parametrize("skip_zero", [False, True])
def test_linear_is_nonzero_weights_per_input_column(skip_zero):
    torch.manual_seed(3)
    layer = nn.Linear(17, 11)
    with torch.no_grad():
        layer.weight.mul_((torch.rand_like(layer.weight) > 0.5).float())
        layer.weight[:, 4] = 0.0  # a dead input column
    got = fanout(layer, (17,), skip_zero_weights=skip_zero)
    assert got.shape == (17,)
    assert got.dtype == torch.int64
    if skip_zero:
        expected = [sum(1 for row in layer.weight.tolist() if row[i] != 0) for i in range(17)]
        assert expected[4] == 0
    else:
        expected = [11] * 17
    assert got.tolist() == expected


def test_batch_and_time_dims_are_ignored():
    conv = make_conv(2, 2, 3, 3, zero_fraction=0.5, padding=1, stride=2)
    reference = brute_conv_fanout(conv, (2, 5, 4), True)
    assert torch.equal(fanout(conv, (2, 5, 4), skip_zero_weights=True), reference)
    assert torch.equal(fanout(conv, (8, 2, 5, 4), skip_zero_weights=True), reference)
    assert torch.equal(fanout(conv, torch.Size([8, 2, 5, 4]), skip_zero_weights=True), reference)
    linear = nn.Linear(5, 2)
    assert fanout(linear, (3, 4, 5)).tolist() == [2] * 5


def test_structural_map_ignores_weight_values():
    conv = nn.Conv1d(2, 2, 3, padding=1, bias=False)
    nn.init.zeros_(conv.weight)
    assert fanout(conv, (2, 4)).tolist() == [[4, 6, 6, 4]] * 2
    assert fanout(conv, (2, 4), skip_zero_weights=True).tolist() == [[0, 0, 0, 0]] * 2


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv2d(1, 1, 3), (5, 5)),  # no channel dim
        (nn.Conv1d(1, 1, 3), (5,)),
        (nn.Conv3d(1, 1, 1), (1, 2, 2)),
        (nn.Linear(3, 2), ()),
        (nn.Conv2d(1, 1, 3), (1, 0, 5)),
        (nn.Conv1d(2, 1, 3), (2, -4)),
        (nn.Linear(3, 2), (0, 3)),
        (nn.Linear(3, 2), (-3,)),
    ],
)
def test_bad_input_shape_raises_value_error(layer, shape):
    with pytest.raises(ValueError, match="input_shape"):
        fanout(layer, shape)


@pytest.mark.parametrize(
    "layer", [nn.ReLU(), nn.Bilinear(3, 3, 2), nn.BatchNorm1d(3), nn.Sequential()]
)
def test_unregistered_layer_raises_type_error_naming_it(layer):
    with pytest.raises(TypeError, match=type(layer).__name__):
        fanout(layer, (1, 3, 3))
