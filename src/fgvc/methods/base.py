"""What a training method is to the rest of fgvc: the ``Method`` base class and the registry of methods.

A method is one module of ``fgvc.methods`` holding a ``MethodSection`` subclass (its config section:
``name: Literal["<method>"]`` and its own keys, each with a default and its checks) and a ``Method``
subclass with ``section = <that class>``. Defining the subclass registers it: the config accepts
``method.name=<method>`` with that section's keys, ``build_method`` builds it, and the trainer and DDP
learn from its attributes what they need. Nothing else names a method.

The trainer calls, per run: ``Method(cfg, num_classes, model, num_train)`` (``model`` and ``num_train``,
the training split's size, only in training, for methods with layers and per-sample state of their
own; evaluation and prediction give neither); per epoch
``on_epoch_start``; per batch ``train_step`` (by default one ``training_loss`` and one update); and
``predict`` for validation, test and prediction (on the plain model, in eval mode, without gradients).
A method with layers or state of its own (CTC's heads and memory banks) is also an ``nn.Module``:
its trainable parameters join the optimiser and its ``state_dict`` travels in ``last.pt``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from fgvc.sections import MethodSection

if TYPE_CHECKING:
    from fgvc.config import Config
    from fgvc.data.records import Splits

# method.name -> its class, filled as method classes are defined
METHODS: dict[str, type[Method]] = {}


class Method:
    # its config section; the value of method.name is the section's ``name`` default
    section: ClassVar[type[MethodSection]]
    # the model's entry points whose outputs it back-propagates: under DDP these run through the
    # wrapper, so that their backward passes average the gradients over the processes
    forwards: ClassVar[tuple[str, ...]] = ("forward",)
    # False: the method trains no image model. It fits a model of its own on the training records
    # (``fit``) and adjusts the predictions of an already trained image model (``base_checkpoint``,
    # ``adjust``); the run is that fit and the evaluation of the adjusted predictions (PriorsNet)
    trains_model: ClassVar[bool] = True
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "section" not in cls.__dict__:  # a helper base, or a variant that reuses its parent's name
            return
        name = cls.section.model_fields["name"].default
        if not isinstance(name, str):
            raise TypeError(f"{cls.__qualname__}.section must give 'name' a default (its method.name)")
        known = METHODS.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"method.name={name} is taken by {known.__module__}.{known.__qualname__}")
        cls.name = name
        METHODS[name] = cls

    @classmethod
    def unused_parameters(cls, section: MethodSection) -> bool:
        """Whether one of its backward passes may leave some of the model's parameters without a
        gradient (DDP must then look for them: ``find_unused_parameters``). A wrong False is never
        silent: DDP stops with an error at the next step."""
        return False

    def on_epoch_start(self, model: nn.Module, epoch: int, optimizer: torch.optim.Optimizer,
                       train_loader: Any) -> None:
        """Called before each epoch (also the first after a resume), e.g. to switch stages."""

    def training_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of one batch; the logits (of the possibly mixed input) feed the running
        accuracy. Methods with their own ``train_step`` need not define it."""
        raise NotImplementedError(f"{type(self).__name__} defines neither training_loss nor train_step")

    def train_step(self, model: nn.Module, batch: dict, update: Callable[..., float],
                   autocast: Callable) -> tuple[float | dict[str, float], torch.Tensor]:
        """One iteration: ``update(loss)`` back-propagates a loss and steps the optimiser (``only=``,
        ``skip=``, ``grads=``: see ``Trainer.update``) and may be called several times. Returns the loss
        to show, or a dict of named losses whose ``"loss"`` is the one to show, and the logits."""
        with autocast():
            loss, logits = self.training_loss(model, batch)
        return update(loss), logits

    @classmethod
    def card(cls, config: dict) -> str | None:
        """What a model trained so is, in one line of its model card (``fgvc export --format hub``), from
        the run's config as saved (a dict); None: the card describes the model by its head and fusion."""
        return None

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor | dict[str, torch.Tensor]:
        """Logits ``[B, C]``, or several prediction rules by name (the first is the headline figure)."""
        return model(batch["image"], batch["meta"])

    # --- methods that train no image model (trains_model = False) ------------------------------
    def base_checkpoint(self) -> str:
        """The trained image model whose predictions ``adjust`` changes."""
        raise NotImplementedError

    def fit(self, splits: Splits, out_dir: Any, progress: bool = True) -> dict:
        """Fit the method's own model on ``splits.train`` and save it in ``out_dir``; returns the
        report's description of it: ``model`` (a name), ``params_m`` and ``epochs``."""
        raise NotImplementedError

    def check_classes(self, classes: Sequence[str], dataset: str) -> None:
        """Refuse, before any prediction, a fitted model of other classes than the dataset's."""
        raise NotImplementedError

    def adjust(self, image_logits: torch.Tensor, samples: Sequence[Any], index: torch.Tensor,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
        """The adjusted log-probabilities of ``samples[index]`` given the image model's logits, and how
        many samples it could not adjust (they keep the image prediction)."""
        raise NotImplementedError
