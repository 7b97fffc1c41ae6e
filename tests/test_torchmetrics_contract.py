"""The torchmetrics contract in the idioms where users meet it: reset(), compute groups of a
MetricCollection, clone() and MetricTracker, pickling and copying models with metrics
attached, forward(), plot(), compute() before update() and help().

Every metric family is covered (synaptic, neuron, energy, sparse-code: ``ALL_FACTORIES``);
expected values always come from the same metric run alone on a fresh model.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import warnings

import pytest
import snntorch as snn
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.wrappers import MetricTracker

import snnmetrics as sm
from tests.workloads import (
    ALL_FACTORIES,
    BATCH_SIZES,
    CODE_FACTORIES,
    FACTORIES,
    assert_equal,
    build_net,
    feed,
    figures,
    fold,
    match_keys,
    run_batch,
)

NAMES = list(ALL_FACTORIES)

try:
    import lightning.pytorch as pl
except ImportError:  # the tests that need it skip
    pl = None


if pl is not None:

    class SavedModule(pl.LightningModule):
        """A LightningModule whose model has metrics attached (module level: pickles)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = build_net(picklable=True)
            self.metrics = MetricCollection({"synops": sm.SynapticOperations(self.net)})

    class FitModule(pl.LightningModule):
        """Logs its validation metrics at each validation epoch end, as users do, also in the
        epochs where its validation stage runs no batch through the SNN."""

        def __init__(self) -> None:
            super().__init__()
            self.net = build_net()
            self.train_metrics = MetricCollection({"synops": sm.SynapticOperations(self.net)})
            self.val_metrics = self.train_metrics.clone(prefix="val_")
            self.logged: list[dict[str, torch.Tensor]] = []

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            (x,) = batch
            for module in self.net.modules():
                if isinstance(module, snn.SpikingNeuron):
                    module.reset_mem()
            loss = torch.stack([self.net(x[:, t]).sum() for t in range(x.shape[1])]).sum()
            self.train_metrics.update()
            return loss

        def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
            if self.current_epoch % 2:  # the SNN is validated every other epoch
                return
            (x,) = batch
            with torch.no_grad():
                for t in range(x.shape[1]):
                    self.net(x[:, t])
            self.val_metrics.update()

        def on_validation_epoch_start(self) -> None:
            self.val_metrics.reset()

        def on_validation_epoch_end(self) -> None:
            values = sm.scalars("val", self.val_metrics.compute())
            self.log_dict(values)
            self.logged.append(values)
            self.val_metrics.reset()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.0)



def _alone(name: str, indices: list[int]) -> dict[str, object]:
    """The figures of metric ``name`` on a fresh model that ran only batches ``indices``."""
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], indices)
    return figures(metric)


def _hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


# --- reset() -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reset_forgets_forward_passes_not_yet_folded(name):
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], [0])
    run_batch(net, 2)  # e.g. training forwards that were never folded
    run_batch(net, 4)
    metric.reset()
    feed(net, [metric], [1, 3])
    assert_equal(figures(metric), _alone(name, [1, 3]), name)


def test_reset_between_training_and_validation_counts_the_validation_batch_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), snn.Leaky(beta=0.9, init_hidden=True))
    synops = sm.SynapticOperations(net)
    with torch.no_grad():
        for _ in range(10):
            net((torch.rand(32, 20) < 0.3).float())  # training, never folded
        synops.reset()
        x = (torch.rand(4, 20) < 0.3).float()
        net(x)
    synops.update()
    # by hand: every nonzero input element reaches all 16 outputs (no zero weight)
    expected = (x != 0).sum() * 16 / 4
    assert int(synops.samples) == 4
    torch.testing.assert_close(synops.compute()["synops"], expected.double())


# --- MetricCollection compute groups -----------------------------------------------------


def _two_layer_net() -> nn.Sequential:
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Linear(4, 5), snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(5, 5), snn.Leaky(beta=0.8, init_hidden=True),
    )


def _differently_configured(net: nn.Module, twin: nn.Module) -> dict[str, sm.HookedMetric]:
    with torch.no_grad():
        net[0].weight[:, :2] = 0.0  # zero weights: the two conventions differ
    return {
        "skip": sm.SynapticOperations(net),
        "all_weights": sm.SynapticOperations(net, skip_zero_weights=False),
        "first_layer": sm.NumActivations(net, layers=["1"]),
        "second_layer": sm.NumActivations(net, layers=["3"]),
        "other_model": sm.SynapticOperations(twin),
        "same_as_skip": sm.SynapticOperations(net),
    }


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    # the first batch is silent: every metric's state is equal after it (nothing counted)
    return [torch.zeros(3, 4, 4), (torch.rand(3, 4, 4, generator=gen) < 0.6) * 2.0]


def _run_pair(net: nn.Module, twin: nn.Module, metrics, batches, twin_batches) -> None:
    for x, y in zip(batches, twin_batches, strict=True):
        for model, data in ((net, x), (twin, y)):
            for module in model.modules():
                if isinstance(module, snn.SpikingNeuron):
                    module.reset_mem()
            with torch.no_grad():
                for t in range(data.shape[1]):
                    model(data[:, t])
        metrics.update()


def test_collection_never_groups_metrics_that_watch_different_things():
    batches = _batches()
    twin_batches = [torch.zeros(3, 4, 4), torch.ones(3, 4, 4)]
    expected = {}
    for name in _differently_configured(_two_layer_net(), _two_layer_net()):
        net, twin = _two_layer_net(), _two_layer_net()
        metrics = _differently_configured(net, twin)
        alone = metrics.pop(name)
        for other in metrics.values():
            other.detach()
        _run_pair(net, twin, alone, batches, twin_batches)
        expected[name] = alone.compute()

    net, twin = _two_layer_net(), _two_layer_net()
    collection = MetricCollection(_differently_configured(net, twin), compute_groups=True)
    _run_pair(net, twin, collection, batches, twin_batches)
    # only identical metrics may share a group
    assert sorted(sorted(group) for group in collection.compute_groups.values()) == [
        ["all_weights"], ["first_layer"], ["other_model"], ["same_as_skip", "skip"],
        ["second_layer"],
    ]
    got = collection.compute()
    for name, value in expected.items():
        for key, item in value.items():  # MetricCollection flattens one level
            assert_equal(got[f"{name}_{key}"], item, f"{name}_{key}")
    # the two conventions really differ on this data: the groups matter
    assert got["skip_synops"] < got["all_weights_synops"]


# --- clone(), deepcopy, MetricTracker -----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_validation_metric_cloned_from_the_training_one(name):
    net = build_net()
    train = ALL_FACTORIES[name](net)
    val = train.clone()
    assert val.model is net and val is not train
    for epoch in range(2):
        train.reset()
        feed(net, [train], [0, 1])
        val.reset()  # the validation stage starts: training forwards are not its own
        feed(net, [val], [2, 3])
        assert_equal(figures(train), _alone(name, [0, 1]), f"train {epoch}")
        assert_equal(figures(val), _alone(name, [2, 3]), f"val {epoch}")
    val.detach()
    train.detach()
    assert _hooks(net) == 0


def test_collection_clone_with_prefix_and_deepcopy_watch_the_same_model():
    net = build_net()
    train = MetricCollection({name: FACTORIES[name](net) for name in ("synops", "firing")})
    val = train.clone(prefix="val_")
    copied = copy.deepcopy(train["synops"])
    assert copied.model is net and val["synops"].model is net
    feed(net, [train], [0])
    val.reset()
    copied.reset()
    feed(net, [val, copied], [2])
    expected = _alone("synops", [2])["total"]
    assert_equal(val["synops"].compute(), expected)
    assert_equal(copied.compute(), expected)
    assert_equal(val["firing"].compute(), _alone("firing", [2])["total"])
    assert_equal(figures(train["synops"]), _alone("synops", [0]))
    assert all(key.startswith("val_") for key in val.compute())


@pytest.mark.parametrize("name", ["synops", "membrane", "energy", "firing", "num_activations"])
def test_metric_tracker_over_two_epochs(name):
    net = build_net()
    maximize = False if name == "firing" else None  # firing rates have no better direction
    tracker = MetricTracker(ALL_FACTORIES[name](net), maximize=maximize)
    epochs = [[0, 1], [2, 3, 4]]
    for indices in epochs:
        tracker.increment()
        feed(net, [tracker], indices)
    # (the tracker's base metric is its module "0": epochs are its last entries)
    for epoch, indices in enumerate(epochs):
        assert_equal(figures(tracker[epoch - 2]), _alone(name, indices), f"epoch {epoch}")
    if name == "synops":
        all_epochs = tracker.compute_all()
        for epoch, indices in enumerate(epochs):
            assert_equal(
                {key: value[epoch] for key, value in all_epochs.items()},
                _alone(name, indices)["total"],
            )


def test_deepcopy_of_a_module_holding_model_and_metric_watches_the_copied_model():
    holder = nn.Module()
    holder.net = build_net()
    holder.synops = sm.SynapticOperations(holder.net)
    twin = copy.deepcopy(holder)
    assert twin.synops.model is twin.net and twin.net is not holder.net
    feed(twin.net, [twin.synops], [1])
    with pytest.raises(ValueError, match="no forward pass"):
        holder.synops.update()  # the copy's forward passes are not the original's
    assert_equal(figures(twin.synops), _alone("synops", [1]))


# --- pickling and copying models with metrics attached ------------------------------------


def _save_and_load(obj: object) -> object:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("copier", [_save_and_load, copy.deepcopy], ids=["torch.save", "deepcopy"])
def test_a_copied_model_is_not_counted_and_drops_the_hooks(copier):
    net = build_net(picklable=True)
    metrics = {name: factory(net) for name, factory in ALL_FACTORIES.items()}
    feed(net, list(metrics.values()), [0, 1])
    copied = copier(net)
    run_batch(copied, 2)  # runs without counting, and loses every hook of the original's
    assert _hooks(copied) == 0
    for name, metric in metrics.items():
        with pytest.raises(ValueError, match="no forward pass"):
            fold(metric, 2)
        assert_equal(figures(metric), _alone(name, [0, 1]), name)
    # the original still counts; detach removes every hook
    feed(net, list(metrics.values()), [2])
    for metric in metrics.values():
        metric.detach()
    assert _hooks(net) == 0


@pytest.mark.skipif(pl is None, reason="needs lightning")
def test_torch_save_of_a_lightning_modules_model_with_metrics_attached():
    module = SavedModule()
    loaded = _save_and_load(module.net)
    run_batch(loaded, 3)
    assert isinstance(loaded, nn.Sequential) and _hooks(loaded) == 0
    whole = _save_and_load(module)  # the module with its metrics: they watch the loaded net
    assert whole.metrics["synops"].model is whole.net
    feed(whole.net, [whole.metrics], [3])
    assert_equal(figures(whole.metrics["synops"]), _alone("synops", [3]))


@pytest.mark.parametrize("name", NAMES)
def test_a_pickled_metric_keeps_its_state_and_watches_its_unpickled_model(name):
    net = build_net(picklable=True)
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], [0, 1])
    restored = pickle.loads(pickle.dumps(metric))
    assert restored.model is not net
    assert_equal(figures(restored), figures(metric), name)
    feed(restored.model, [restored], [2])
    feed(net, [metric], [2])
    assert_equal(figures(restored), figures(metric), name)
    if name != "basis_set_size_increase":  # each compute() moves its baseline on
        assert_equal(figures(restored), _alone(name, [0, 1, 2]), name)


@pytest.mark.parametrize("name", list(CODE_FACTORIES))
def test_sparse_code_metrics_resume_from_a_checkpoint(name):
    net = build_net()
    first = ALL_FACTORIES[name](net)
    feed(net, [first], [0, 1])
    saved = _save_and_load(first.state_dict())
    first.detach()
    resumed = ALL_FACTORIES[name](net)
    resumed.load_state_dict(saved)
    feed(net, [resumed], [2, 3])
    assert_equal(figures(resumed), _alone(name, [0, 1, 2, 3]), name)


# --- forward() ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forward_returns_the_batch_and_accumulates(name):
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    batch_values = []
    for index in (0, 1, 2, 3):
        run_batch(net, index)
        if name != "match_accuracy":
            batch_values.append(metric())
            continue
        # a batch alone compares nothing (the codes are stored by another): its value
        # raises, and the batch is folded all the same
        with pytest.raises(ValueError, match="compared no code"):
            metric(match_keys(index), store=index == 0)
    if name == "basis_set_size_increase":  # every batch value moves its baseline on
        return
    assert_equal(figures(metric), _alone(name, [0, 1, 2, 3]), name)
    if name != "match_accuracy":
        assert_equal(batch_values[2], _alone(name, [2])["total"], name)


@pytest.mark.parametrize("name", NAMES)
def test_forward_that_raises_keeps_the_state(name):
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], [0, 1])
    before = {key: value.clone() for key, value in metric.metric_state.items()}
    arguments = (match_keys(2),) if name == "match_accuracy" else ()
    with pytest.raises(ValueError, match="no forward pass"):
        metric(*arguments)  # nothing ran since the last update
    for key, value in metric.metric_state.items():
        assert torch.equal(value, before[key]), key
    assert int(metric.samples) == BATCH_SIZES[0] + BATCH_SIZES[1]
    assert_equal(figures(metric), _alone(name, [0, 1]), name)


def test_match_accuracy_forward_with_nothing_compared_keeps_the_stored_codes():
    def run(use_forward: bool) -> dict[str, torch.Tensor]:
        net = build_net()
        metric = sm.MatchAccuracy(net, num_keys=3)
        run_batch(net, 0)
        metric.update(match_keys(0), store=True)
        run_batch(net, 1)
        if use_forward:  # the batch alone compares nothing: its value raises
            with pytest.raises(ValueError, match="compared no code"):
                metric(match_keys(1), store=True)
        else:
            metric.update(match_keys(1), store=True)
        run_batch(net, 2)
        metric.update(match_keys(2), store=False)  # compared with batches 0 and 1's codes
        state = {k: v for k, v in metric.metric_state.items() if k != "watch_id"}
        return {**state, "accuracy": metric.compute()}

    assert_equal(run(use_forward=True), run(use_forward=False))


# --- plot() -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_plots_its_layers_with_their_types(name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], [0])
    results = []
    for index in (1, 2, 3):
        feed(net, [metric], [index])
        results.append(metric.compute())
    fig, ax = metric.plot()
    text = " ".join(
        [label.get_text() for label in ax.get_xticklabels()] + [ax.get_title()]
        + [axes.get_title() for axes in fig.axes]
    )
    types = {type(net.get_submodule(layer)).__name__ for layer in metric.layer_names}
    assert types and all(kind in text for kind in types), (types, text)
    plt.close(fig)
    if name == "basis_average":  # maps per weight: no figure over time
        with pytest.raises(ValueError, match="one result at a time"):
            metric.plot(results)
        return
    fig, ax = metric.plot(results)
    assert ax.lines and all(len(line.get_xdata()) == len(results) for line in ax.lines)
    plt.close(fig)


# --- compute() before update() -------------------------------------------------------------


def _has_nan_or_nothing(result: object) -> bool:
    """Whether every figure of ``result`` is NaN (or it has no layer); BasisAverage's
    ``sums`` and ``counts`` are totals, 0 before any update."""
    if isinstance(result, dict):
        figures = {key: value for key, value in result.items() if key not in ("sums", "counts")}
        return all(_has_nan_or_nothing(value) for value in figures.values())
    assert isinstance(result, torch.Tensor)
    return bool(torch.isnan(result).all())


@pytest.mark.parametrize("name", NAMES)
def test_compute_before_update_gives_nan_or_no_layer_with_a_warning(name):
    metric = ALL_FACTORIES[name](build_net())
    with pytest.warns(UserWarning, match="called before the ``update``"):
        result = metric.compute()
    assert _has_nan_or_nothing(result), result


@pytest.mark.skipif(pl is None, reason="needs lightning")
def test_fit_whose_validation_stage_runs_no_batch_logs_nan(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    x = (torch.rand(4, 3, 2, 8) < 0.5).float()
    loader = DataLoader(TensorDataset(x), batch_size=2)
    module = FitModule()
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's about small loaders, torchmetrics' NaN
        trainer.fit(module, loader, loader)
    first, second = module.logged
    assert all(torch.isfinite(value) for value in first.values()) and first
    assert set(second) == set(first) and all(torch.isnan(value) for value in second.values())
    assert int(module.train_metrics["synops"].samples) == 8


# --- help() -------------------------------------------------------------------------------

PUBLIC_METRICS = [
    sm.SynapticOperations, sm.NeuronOperations, sm.MembraneUpdates, sm.ActivationSparsity,
    sm.FiringRate, sm.Energy, sm.NumActivations, sm.BasisSetSize, sm.BasisSetSizeIncrease,
    sm.BasisAverage, sm.FeatureCoverage, sm.MatchAccuracy, sm.SynOps,
]


@pytest.mark.parametrize("cls", PUBLIC_METRICS, ids=lambda cls: cls.__name__)
def test_help_documents_the_constructor_and_compute(cls):
    init_doc = inspect.getdoc(cls.__init__) or ""
    compute_doc = inspect.getdoc(cls.compute) or ""
    assert init_doc != inspect.getdoc(nn.Module.__init__) and "Args:" in init_doc
    assert compute_doc != inspect.getdoc(Metric.compute) and "Returns:" in compute_doc
    for parameter in list(inspect.signature(cls.__init__).parameters)[1:]:
        assert parameter.lstrip("*") in init_doc, (cls.__name__, parameter)
