"""Data-parallel training on Hugging Face Accelerate: DDP over processes launched by ``accelerate launch``.

Under ``accelerate launch --num_processes N``, every process holds a copy of the env with its share of the rows
(``n_envs / N`` responses per rollout, prompts drawn from its own seed) and of each minibatch, and the trainers
reduce what must be global (Huang et al. 2022 list them for PPO): advantage whitening and the loss normalisers (sums
of tokens over all processes), reward normalisation, the adaptive KL controller's measured KL and the logged means.
Gradients are all-reduced by DDP (NCCL on GPUs, gloo on CPUs); only the main process writes.

Every policy computation goes through one module (:class:`PolicyCall`), which is what an engine that shards
parameters (FSDP, DeepSpeed ZeRO-3) would need too; those engines are refused for now, because saving, exporting and
the held-out evaluation read the full parameters on the main process (docs/scaling_out.md says what is missing).

:class:`DataParallel` is the one object the trainers ask. In a plain ``python`` run it is the single process:
every reduction is the identity, nothing is wrapped, and the trainers run exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rlhf_gym.errors import ConfigError
from rlhf_gym.launcher import launched_processes
from rlhf_gym.utils import resolve_device

INSTALL_HINT = 'pip install "rlhf-gym[distributed]"'
SEED_STRIDE = 1_000_003
"""Process ``i`` of a run with seed ``s`` samples with seed ``s + i * SEED_STRIDE`` (a prime, far from the seeds of
other runs in a sweep), so the processes draw different prompts and tokens."""


SHARDING_ENGINES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}
"""The environment flags ``accelerate launch`` sets for the engines that shard parameters or optimizer state."""


def check_engine() -> None:
    """Refuse an engine this trainer does not support yet (FSDP, DeepSpeed), before any model is built."""
    for flag, engine in SHARDING_ENGINES.items():
        if os.environ.get(flag, "false").lower() in ("1", "true"):
            raise ConfigError(f"Accelerate's config asks for {engine}, which rlhf-gym does not support yet: its saving, "
                              "export and held-out evaluation read full parameters on the main process. Use DDP "
                              "(configs/accelerate/ddp.yaml), with --lora-r to fit a larger model (docs/scaling_out.md)")


class PolicyCall(nn.Module):
    """Every policy computation of a trainer as this module's ``forward(method, *args)``.

    A data-parallel wrapper acts on forward calls: DDP arms its gradient all-reduce in the forward of the update, and
    FSDP and ZeRO-3 gather their sharded parameters there, for sampling as much as for the update. Routing each call
    (``start``, ``advance``, ``evaluate_sequences`` of :class:`rlhf_gym.agents.TransformerPolicy`; ``__call__`` of a
    plain causal
    LM) through one module lets the same trainer code run unwrapped, or under any engine Accelerate prepares.
    """

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # the method name routes the call, so one wrapped forward serves sampling (start/advance, under no_grad) and the
        # update (evaluate_sequences, whose graph DDP's backward hooks all-reduce)
        return getattr(self.policy, method)(*args, **kwargs)


class DataParallel:
    """The processes of one run: one (``accelerator=None``), or those of ``accelerate launch``.

    :param accelerator: an ``accelerate.Accelerator`` whose process group is up, or None for a single process.
    """

    def __init__(self, accelerator: Any | None = None):
        self.accelerator = accelerator

    @classmethod
    def from_launch(cls) -> DataParallel:
        """The run's processes as launched: an Accelerator when ``accelerate launch`` started several processes, else the
        single process. Accelerate is then required (the ``distributed`` extra)."""
        check_engine()
        if launched_processes() <= 1:  # a plain run needs no Accelerate at all (it is an optional extra)
            return cls()
        try:
            from accelerate import Accelerator
        except ImportError as error:
            raise ConfigError(f"{launched_processes()} processes were launched, and data-parallel training needs "
                              f"Accelerate: {INSTALL_HINT}") from error
        accelerator = Accelerator()
        # e.g. no GPU and no ACCELERATE_USE_CPU: Accelerate may join no process group, and each process would train alone
        if accelerator.num_processes != launched_processes():
            raise ConfigError(f"{launched_processes()} processes were launched but Accelerate joined "
                              f"{accelerator.num_processes} ({accelerator.distributed_type}): without a GPU, launch with "
                              f"`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N ...` "
                              "(see docs/scaling_out.md)")
        return cls(accelerator)

    # ------------------------------------------------------------------------------------------ who
    @property
    def distributed(self) -> bool:
        return self.accelerator is not None

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return 0 if self.accelerator is None else self.accelerator.process_index

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def device(self, requested: str) -> torch.device:
        """This process's device: Accelerate's in a data-parallel run (plain ``cpu`` for its ``cpu:0``, which
        checkpoints could not be loaded back onto), else ``requested`` (``auto``: CUDA when present)."""
        if self.accelerator is None:
            return resolve_device(requested)
        device = self.accelerator.device
        return torch.device("cpu") if device.type == "cpu" else device

    def describe(self) -> str:
        """``"1 process"``, or the number of processes and the engine (``"2 processes, MULTI_GPU"``, ``FSDP``, ...)."""
        if self.accelerator is None:
            return "1 process"
        return f"{self.num_processes} processes, {self.accelerator.distributed_type.value}"

    def process_seed(self, seed: int | None) -> int | None:
        """This process's sampling seed (see :data:`SEED_STRIDE`); the run's own seed on process 0."""
        return None if seed is None else seed + self.process_index * SEED_STRIDE

    def share(self, total: int, what: str) -> int:
        """This process's share of ``total`` (responses per rollout, responses or comparisons per minibatch)."""
        # equal shares, exactly: gather needs equal shapes, and DDP's mean of per-process means is the global mean only
        # when every process holds as many samples
        if total % self.num_processes:
            raise ConfigError(f"{what} {total} does not split over {self.num_processes} processes: make it a multiple "
                              f"of {self.num_processes}")
        return total // self.num_processes

    # ------------------------------------------------------------------------------------ reductions
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over all processes (the tensor itself in a single process)."""
        # For the counts and sums that a global statistic is made of (token counts of the loss normalisers, the
        # whitening's sums): a sum of counts is exact where a mean of per-process means would weigh processes alike
        # whatever their number of tokens. Every reduction here is a collective call: all processes must make it
        if self.accelerator is None:
            return tensor
        return self.accelerator.reduce(tensor.clone(), reduction="sum")

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All processes' tensors of equal shape concatenated along dim 0, in process order."""
        # for statistics that are no sums (a std over all responses, the return normaliser's batch, GRPO's batch
        # scale); all_gather needs equal shapes, which equal shares (:meth:`share`) give
        return tensor if self.accelerator is None else self.accelerator.gather(tensor.contiguous())

    def own_part(self, gathered: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor made by :meth:`gather`."""
        size = gathered.shape[0] // self.num_processes  # equal shares, in process order (gather's layout)
        return gathered[self.process_index * size:(self.process_index + 1) * size]

    def mean(self, values: list[float] | np.ndarray) -> float:
        """The mean of all processes' values together (NaN when there are none anywhere)."""
        values = np.asarray(values, dtype=np.float64)
        if self.accelerator is None:
            return float(values.mean()) if values.size else float("nan")
        # the sum and the count go together, so a process with more values weighs more (the mean of everyone's values,
        # not a mean of means), and a process with none still takes part in the collective call; on the accelerator's
        # device (NCCL reduces CUDA tensors only), in float64 so that large sums stay exact
        total = self.sum(torch.tensor([values.sum(), values.size], dtype=torch.float64, device=self.accelerator.device))
        return float(total[0] / total[1]) if total[1] > 0 else float("nan")

    def barrier(self) -> None:
        # e.g. so no process reads a checkpoint, or exits, before the main process has written it
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Leave the process group at the end of a run (Accelerate's ``end_training``: ``destroy_process_group``).

        A process that exits with its gloo group still up can abort in the interpreter's teardown ("terminate called
        without an active exception", SIGABRT) after its work is done, which fails the whole launch."""
        if self.accelerator is not None:
            self.accelerator.end_training()

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value`` (any picklable object), on every process."""
        if self.accelerator is None:
            return value
        # imported here: Accelerate is optional, and only a data-parallel run gets this far
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    # ------------------------------------------------------------------------------------- training
    def prepare(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        """``module`` and ``optimizer`` for the launched engine (DDP, FSDP, DeepSpeed); unchanged in a single process."""
        if self.accelerator is None:
            return module, optimizer
        # the module must be the PolicyCall: DDP only syncs gradients of computations that go through its forward
        return self.accelerator.prepare(module, optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of ``loss``, all-reduced over the processes (the mean, as DDP, FSDP and DeepSpeed average them)."""
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters: Iterator[nn.Parameter], max_norm: float) -> torch.Tensor:
        """The global gradient norm, after clipping it to ``max_norm`` (sharded gradients are reduced first)."""
        # Accelerate's, not torch's: it unscales fp16 gradients first, and computes the norm of sharded ones globally
        return self.accelerator.clip_grad_norm_(parameters, max_norm)

    def on_main(self, write: Callable[[], Any]) -> Any:
        """Run ``write`` on the main process only (logs, checkpoints, exports); the others wait until it is done."""
        result = write() if self.is_main_process else None
        self.barrier()
        return result


class ProcessGroupKLController:
    """An env's KL controller kept in step over the processes: the env's updates during a rollout are held, and
    :meth:`synchronise` applies one update with the KL measured over every process's responses (their mean, weighted by
    count), so ``beta`` stays the same on all processes. In a single process the env's controller is used as it is.

    :param controller: the env's controller (:class:`rlhf_gym.kl.FixedKLController` or ``AdaptiveKLController``).
    """

    def __init__(self, controller: Any, parallel: DataParallel):
        self.controller, self.parallel = controller, parallel
        self._kl_sum, self._count = 0.0, 0

    @property
    def beta(self) -> float:
        return self.controller.beta

    def update(self, current_kl: float, n_samples: int) -> None:
        # held, not applied: beta must not change on one process before the others, nor mid-rollout. The sum weighted
        # by count lets synchronise recover the mean KL of every response, however the env batched its scoring
        self._kl_sum += current_kl * n_samples
        self._count += n_samples

    def synchronise(self) -> None:
        """Apply the held updates of all processes as one (a collective call: every process makes it)."""
        totals = self.parallel.sum(torch.tensor([self._kl_sum, self._count], dtype=torch.float64,
                                                device=self.parallel.accelerator.device))
        # one update with the global mean KL and the global count: every process applies the same numbers to the same
        # beta, so the betas stay equal without being broadcast
        if totals[1] > 0:
            self.controller.update(float(totals[0] / totals[1]), int(totals[1]))
        self._kl_sum, self._count = 0.0, 0

    def state_dict(self) -> dict:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state)
