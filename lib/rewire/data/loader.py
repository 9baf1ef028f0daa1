"""Training batches: uint8 tensors on the training device, augmented a whole batch at a time.

:func:`crop_and_flip` does the random crops and horizontal flips of a batch in one indexing
operation; :class:`BatchLoader` draws each epoch's order and augmentation from two dedicated
CPU generators, so batches are reproducible on CPU and CUDA and its state can be resumed exactly.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

__all__ = ["BatchLoader", "crop_and_flip"]


def crop_and_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Batched random-crop + horizontal-flip of uint8 ``[B, C, H, W]`` images (no Python loop over images).

    Image ``b`` becomes the ``H x W`` window at ``(top[b], left[b])`` of the image zero-padded
    by ``padding`` on every side, mirrored left-right where ``flip[b]`` is true. Offsets lie
    in ``[0, 2 * padding]``; ``top = left = padding`` without flip is the identity.
    """
    b, c, h, w = images.shape
    device = images.device
    hp, wp = h + 2 * padding, w + 2 * padding
    if padding > 0:
        padded = images.new_zeros((b, c, hp, wp))
        padded[:, :, padding:padding + h, padding:padding + w] = images
    else:
        padded = images.contiguous()
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = top.to(device=device, dtype=torch.long)[:, None] + ar_h  # [B, H]
    cols = left.to(device=device, dtype=torch.long)[:, None] + torch.where(
        flip.to(device=device, dtype=torch.bool)[:, None], (w - 1) - ar_w, ar_w)  # [B, W]
    # One gather over the flattened padded planes (several times faster than 4-D advanced indexing).
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.view(b, c, hp * wp).gather(2, flat).view(b, c, h, w)


class BatchLoader:
    """Epochs of ``(images, labels)`` batches from uint8 tensors kept on the training device.

    ``images`` (uint8 ``[N, C, H, W]``) and ``labels`` are moved to ``device`` once. Every
    ``iter(loader)`` is one epoch: a permutation (``shuffle=True``) from the order generator
    (``order_seed``) and, with ``augment=True``, per-image crop offsets in
    ``[0, 2 * crop_padding]`` and flips (p = 0.5) from the augmentation generator
    (``augmentation_seed``). Both generators live on the CPU, so the same seeds give the
    same batches on CPU and CUDA; the random numbers of an epoch are drawn when the epoch
    starts. Batches are float32, ``(x / 255 - mean) / std`` per channel, with int64 labels.

    ``state_dict()`` holds both generator states and the epoch counter (plain tensors and
    ints, loadable with ``torch.load(weights_only=True)``). Taken between epochs and loaded
    into a fresh loader, the next epoch is identical to the one the original would produce.
    Taken in the middle of an epoch it resumes at the start of the next epoch.
    """

    STATE_FORMAT = "rewire.BatchLoader/1"

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        order_seed: int = 0,
        augmentation_seed: int = 0,
        drop_last: bool = False,
        crop_padding: int = 4,
        horizontal_flip: bool = True,
    ) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"BatchLoader expects uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be [N] with N = {images.shape[0]}, got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        n = images.shape[0]
        if n == 0:
            raise ValueError("BatchLoader needs at least one example")
        if drop_last and n < batch_size:
            raise ValueError(f"drop_last=True with {n} examples and batch_size {batch_size} yields no batch; "
                             f"lower batch_size or set drop_last=False")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.crop_padding = int(crop_padding)
        self.horizontal_flip = bool(horizontal_flip)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.order_seed = int(order_seed)
        self.augmentation_seed = int(augmentation_seed)
        self._order_generator = torch.Generator(device="cpu").manual_seed(self.order_seed)
        self._augmentation_generator = torch.Generator(device="cpu").manual_seed(self.augmentation_seed)
        self._epoch = 0
        self.last_index: torch.Tensor | None = None  # dataset indices of the batch yielded last

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    @property
    def epoch(self) -> int:
        """Number of epochs started so far."""
        return self._epoch

    def __len__(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` -> float32 ``(x / 255 - mean) / std``."""
        return images.float().div_(255.0).sub_(self._mean).div_(self._std)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_examples
        # All random numbers of the epoch are drawn now, on the CPU generators.
        order = torch.randperm(n, generator=self._order_generator) if self.shuffle else torch.arange(n)
        if self.augment:
            span = 2 * self.crop_padding + 1
            top = torch.randint(0, span, (n,), generator=self._augmentation_generator)
            left = torch.randint(0, span, (n,), generator=self._augmentation_generator)
            if self.horizontal_flip:
                flip = torch.rand(n, generator=self._augmentation_generator) < 0.5
            else:
                flip = torch.zeros(n, dtype=torch.bool)
            top, left, flip = top.to(self.device), left.to(self.device), flip.to(self.device)
        self._epoch += 1
        order = order.to(self.device)
        limit = len(self) * self.batch_size if self.drop_last else n

        def batches():
            for start in range(0, limit, self.batch_size):
                idx = order[start:start + self.batch_size]
                x = self.images[idx]
                if self.augment:
                    stop = start + idx.numel()
                    x = crop_and_flip(x, top[start:stop], left[start:stop], flip[start:stop], self.crop_padding)
                self.last_index = idx  # the dataset indices of this batch (ATTA's per-sample cache reads them)
                yield self.normalise(x), self.labels[idx]

        return batches()

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": self.STATE_FORMAT,
            "epoch": self._epoch,
            "num_examples": self.num_examples,
            "order_generator": self._order_generator.get_state().clone(),
            "augmentation_generator": self._augmentation_generator.get_state().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"epoch", "order_generator", "augmentation_generator"} - set(state)
        if missing or state.get("format", self.STATE_FORMAT) != self.STATE_FORMAT:
            raise ValueError(f"not a BatchLoader state (format {state.get('format')!r}, missing {sorted(missing)})")
        if int(state.get("num_examples", self.num_examples)) != self.num_examples:
            raise ValueError(f"the state belongs to a loader over {state['num_examples']} examples, this one has "
                             f"{self.num_examples}; resume with the same data (same subset and seeds)")
        self._order_generator.set_state(state["order_generator"].to("cpu", torch.uint8))
        self._augmentation_generator.set_state(state["augmentation_generator"].to("cpu", torch.uint8))
        self._epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return (f"BatchLoader({self.num_examples} examples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augment}, device={self.device}, epoch={self._epoch})")

