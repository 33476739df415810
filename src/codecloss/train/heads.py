"""Calibrating CPIPS heads on BAPPS 2AFC judgements (the LPIPS "lin" recipe).

Recipe (Zhang et al., CVPR 2018, and their ``train.py``): the backbone is frozen; the
per-channel weights of each tap (1x1 convolutions, initialised here to the uniform heads)
and a small judgement network are trained. The network maps the two distances of a
triplet, ``(d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps))`` with eps = 0.1, through
three 1x1 layers (32 channels, LeakyReLU 0.2) to the probability that people prefer p1,
with a binary cross-entropy against the judgement. Adam (lr 1e-4, beta1 0.5), ``epochs`` at
the base rate then ``decay_epochs`` of linear decay (LPIPS's schedule), weights clamped
to >= 0 after every step. LPIPS also applies dropout before its lin layers; this recipe
does not.

Instead of BAPPS, ``triplets`` names a file of labelled triplets (:mod:`codecloss.train.triplets`: distorted
natural crops with soft labels from LPIPS-VGG), so the heads distil LPIPS's calibration.

The run writes ``OUT/checkpoint.pt`` (resumable), ``OUT/log.jsonl`` (one line per epoch),
and at the end ``OUT/head.pt`` (a CPIPS head file, see :func:`codecloss.cpips.load_head`)
with ``OUT/head.pt.sha256``.

Example:
    >>> from codecloss.train.heads import HeadTrainConfig, train_heads
    >>> cfg = HeadTrainConfig(bapps_root="dataset", out_dir="runs/heads", weights=None)
    >>> summary = train_heads(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from codecloss import __version__
from codecloss._io import append_jsonl, atomic_torch_save
from codecloss._progress import progress as progress_bar
from codecloss.backbones import DEFAULT_BACKBONE
from codecloss.cpips import CPIPS
from codecloss.evaluate.bapps import BappsDataset, find_categories
from codecloss.train.triplets import TripletDataset, read_triplets
from codecloss.weights.integrity import sha256_file

__all__ = ["HEAD_FILE", "HeadTrainConfig", "JudgeNet", "train_heads"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
HEAD_FILE = "head.pt"
LOG_FILE = "log.jsonl"
_RESUME_KEYS = ("backbone", "weights", "layers", "hidden", "batch_size", "categories", "split", "limit", "seed",
                "triplets")


@dataclass
class HeadTrainConfig:
    """Everything that defines a head-training run (stored in its checkpoint).

    Args:
        bapps_root: BAPPS root holding ``2afc/<split>/<category>/`` (``None`` when training on ``triplets``).
        out_dir: where checkpoint, log and head file go.
        backbone: backbone id.
        weights: backbone weights (``"default"``, registry name, checkpoint path, or ``None``).
        layers: taps to calibrate (``None``: the backbone's default taps).
        categories: 2AFC categories to train on (``None``: every folder under the split).
        split: BAPPS split, ``"train"`` normally.
        epochs: epochs at the base learning rate.
        decay_epochs: further epochs with the rate decaying linearly (LPIPS: 5 + 5).
        lr: Adam learning rate.
        beta1: Adam beta1.
        batch_size: triplets per step.
        hidden: width of the judgement network.
        seed: seeds the judgement network's init and the shuffling.
        limit: use only the first ``limit`` triplets of each category (quick runs, tests).
        num_workers: image-decoding worker processes.
        device: training device.
        ckpt_every: write the checkpoint every this many steps (and at each epoch end).
        triplets: instead of BAPPS, a labelled triplet file (distillation, see
            :func:`codecloss.train.triplets.write_triplets`); exactly one of ``bapps_root``/``triplets``.
    """

    bapps_root: str | None
    out_dir: str
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = "default"
    layers: list[str] | None = None
    categories: list[str] | None = None
    split: str = "train"
    epochs: int = 5
    decay_epochs: int = 5
    lr: float = 1e-4
    beta1: float = 0.5
    batch_size: int = 50
    hidden: int = 32
    seed: int = 0
    limit: int | None = None
    num_workers: int = 0
    device: str = "cpu"
    ckpt_every: int = 500
    triplets: str | None = None

    def __post_init__(self) -> None:
        if (self.bapps_root is None) == (self.triplets is None):
            raise ValueError(f"bapps_root, triplets: give exactly one, got {self.bapps_root!r}, {self.triplets!r}")
        for name in ("epochs", "batch_size", "hidden", "ckpt_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.decay_epochs, int) or self.decay_epochs < 0:
            raise ValueError(f"decay_epochs: expected an integer >= 0, got {self.decay_epochs!r}")
        if not self.lr > 0 or not 0 <= self.beta1 < 1:
            raise ValueError(f"lr, beta1: expected lr > 0 and 0 <= beta1 < 1, got {self.lr!r}, {self.beta1!r}")

    @property
    def total_epochs(self) -> int:
        """``epochs + decay_epochs``."""
        return self.epochs + self.decay_epochs

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: ``lr`` up to epoch ``epochs``, then ``lr / decay_epochs`` less per epoch."""
        if self.decay_epochs == 0:
            return self.lr
        return self.lr * (1.0 - max(0, epoch - self.epochs) / self.decay_epochs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in checkpoints)."""
        return dataclasses.asdict(self)


class JudgeNet(nn.Module):
    """LPIPS's ``Dist2LogitLayer``: two distances -> logit of "people prefer p1".

    Args:
        hidden: width of the two hidden layers.
        eps: added to the denominators of the distance ratios.
    """

    def __init__(self, hidden: int = 32, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.net = nn.Sequential(
            nn.Linear(5, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, d0: Tensor, d1: Tensor) -> Tensor:
        """(N,) logits from (N,) distances."""
        features = torch.stack([d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)], dim=1)
        return self.net(features).squeeze(1)


def _dataset(config: HeadTrainConfig) -> Dataset:
    if config.triplets is not None:
        dataset = TripletDataset(read_triplets(config.triplets))
        logger.info("training on %d distilled triplets from %s", len(dataset), config.triplets)
        return dataset
    categories = find_categories(config.bapps_root, "2afc", config.split, config.categories)
    parts = [BappsDataset(Path(config.bapps_root) / "2afc" / config.split / c, "2afc", config.limit) for c in categories]
    logger.info("training on %s: %s triplets", categories, [len(p) for p in parts])
    return ConcatDataset(parts)


def _check_resume(saved: dict[str, Any], config: HeadTrainConfig) -> None:
    changed = {k: (saved.get(k), getattr(config, k)) for k in _RESUME_KEYS if saved.get(k) != getattr(config, k)}
    if changed:
        raise ValueError(f"resume: the checkpoint was trained with different settings {changed} (saved, given)")


def train_heads(config: HeadTrainConfig, resume: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Train CPIPS heads on BAPPS 2AFC (or on distillation triplets) and write the head file.

    Args:
        config: the run's settings.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (settings must match,
            except ``epochs``/``decay_epochs``/``lr``/``device``/``num_workers``/``ckpt_every``).
        progress: progress bar on stderr: ``True`` always, ``False`` never, ``None`` only on a terminal.

    Returns:
        ``{"head", "sha256", "epochs", "history"}``: the head path, its SHA-256, the number of
        epochs done and per-epoch ``{"epoch", "loss", "accuracy", "lr"}`` records.
    """
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_FILE
    device = torch.device(config.device)
    model = CPIPS(config.backbone, layers=config.layers, weights=config.weights).to(device)
    model.lin.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        judge = JudgeNet(config.hidden).to(device)
    parameters = [*model.lin.parameters(), *judge.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, 0.999))
    epoch, batches_done, history = 0, 0, []
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        _check_resume(state["config"], config)
        model.lin.load_state_dict(state["lin"])
        judge.load_state_dict(state["judge"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, batches_done, history = state["epoch"], state["batches_done"], state["history"]
        logger.info("resumed from %s at epoch %d, batch %d", ckpt_path, epoch, batches_done)

    def save() -> None:
        atomic_torch_save(
            {"lin": model.lin.state_dict(), "judge": judge.state_dict(), "optimizer": optimizer.state_dict(),
             "epoch": epoch, "batches_done": batches_done, "history": history, "config": config.to_dict()},
            ckpt_path,
        )

    dataset = _dataset(config)
    while epoch < config.total_epochs:
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        remaining = Subset(dataset, order[batches_done * config.batch_size:].tolist())
        loader = DataLoader(remaining, batch_size=config.batch_size, num_workers=config.num_workers)
        sums = {"loss": 0.0, "accuracy": 0.0, "count": 0}
        for batch in progress_bar(loader, progress, desc=f"epoch {epoch + 1}/{config.total_epochs}", leave=False):
            ref, p0, p1 = (batch[k].to(device) for k in ("ref", "p0", "p1"))
            target = batch["judge"].to(device, torch.float32)
            d0, d1 = model(ref, p0), model(ref, p1)
            loss = F.binary_cross_entropy_with_logits(judge(d0, d1), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for conv in model.lin.values():
                    conv.weight.clamp_(min=0)
                closer1 = (d1 < d0).float()
                accuracy = closer1 * target + (1 - closer1) * (1 - target)
            n = target.numel()
            sums["loss"] += float(loss.detach()) * n
            sums["accuracy"] += float(accuracy.sum())
            sums["count"] += n
            batches_done += 1
            if batches_done % config.ckpt_every == 0:
                save()
        count = max(sums["count"], 1)
        record = {"epoch": epoch + 1, "loss": sums["loss"] / count, "accuracy": sums["accuracy"] / count,
                  "lr": config.lr_at(epoch), "triplets": sums["count"]}
        history.append(record)
        append_jsonl(out_dir / LOG_FILE, record)
        logger.info("epoch %d: loss %.4f, 2AFC accuracy on training batches %.4f", epoch + 1, record["loss"],
                    record["accuracy"])
        epoch, batches_done = epoch + 1, 0
        save()
    return _write_head(model, config, history, out_dir)


def _write_head(model: CPIPS, config: HeadTrainConfig, history: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    head = model.head_state()
    head["meta"] = {
        "recipe": "LPIPS lin (BCE ranking, Adam, linear decay, clamp >= 0)",
        "backbone_weights": "none" if config.weights is None else str(config.weights),
        "data": f"distilled triplets {config.triplets}" if config.triplets else f"BAPPS 2afc/{config.split}",
        "categories": config.categories or "all",
        "epochs": config.total_epochs,
        "final_loss": history[-1]["loss"] if history else None,
        "codecloss_version": __version__,
    }
    path = out_dir / HEAD_FILE
    atomic_torch_save(head, path)
    digest, _ = sha256_file(path)
    (out_dir / f"{HEAD_FILE}.sha256").write_text(f"{digest}  {HEAD_FILE}\n")
    logger.info("wrote %s (sha256 %s)", path, digest)
    return {"head": str(path), "sha256": digest, "epochs": config.total_epochs, "history": history}
